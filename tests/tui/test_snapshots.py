"""Snapshot tests: every cashier screen at 80x24 and 100x30, in English and in Chinese, compared with
the accepted SVG screenshots in __snapshots__/ (update after a deliberate change with
`--snapshot-update`, then look at the new SVGs before committing them). Fixed clock, fixed
transaction ids, no cursor blink. (The merchant QR is checked by decoding a screenshot instead:
tests/tui/test_counter_demo.py; its reference is new on every run.)"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts
from terminal.tui.screens.checkout import CheckoutScreen
from terminal.tui.screens.receipt import ReceiptScreen
from terminal.tui.screens.result import ResultScreen, SaleOutcome
from tests.tui.conftest import burst, keys_of, sign_in, table_measured, type_text, wait_for

SIZES = {"80x24": (80, 24), "100x30": (100, 30)}


@pytest.fixture
def data_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A data directory at the same path in every run (the day-close screen shows where the report
    was written; pytest's tmp_path has a run number in it): one per snapshot, emptied first."""
    path = Path("/tmp") / "walletpos-snapshots" / request.node.callspec.id / "data"
    shutil.rmtree(path, ignore_errors=True)
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)
LOCALES = ("en", "zh-CN")


def seed(service) -> list:
    rows = []
    for i, (minor, token) in enumerate([(1234, "tokA"), (8800, "tokB"), (150000, "tokC")]):
        result = service.pay(PaymentRequest(Money(minor, service.currency), Method.CARD, card_token=token,
                                            cvm_performed=True),
                             CardFacts(scheme="unionpay", masked_pan="622202******1234"),
                             txn_id=f"01a20700-0000-7000-8000-00000000000{i}")
        rows.append(result.row)
    return rows


async def settle(pilot) -> None:
    """Workers done, a dialog's input focused, and every table has its rows and has sized its columns
    to them (a DataTable does that on idle: one pause is not always enough, and the snapshot then
    shows columns cut to the header's width; seen once on the transactions screen at 100x30)."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    seen = None
    for _ in range(50):
        # a screen's worker may start a frame after the screen shows, and fill a table then: the
        # screen is settled when its tables' rows are the same in two looks in a row, and measured
        await pilot.app.workers.wait_for_complete()
        screen = pilot.app.screen
        rows = (screen, tuple(t.row_count for t in screen.query(DataTable)))
        # a dialog's first field takes the focus (and shows its cursor) a frame after the dialog shows
        focus_due = screen.focused is None and any(i.can_focus for i in screen.query(Input))
        if not focus_due and rows == seen and all(table_measured(t) for t in screen.query(DataTable)):
            break
        seen = rows
        await pilot.pause(0.02)
    await pilot.pause()


async def nothing(pilot) -> None:
    await settle(pilot)


async def add_item(pilot, digits: str, name: str, quantity: str = "") -> None:
    await type_text(pilot, digits)
    await pilot.press("f2")
    await settle(pilot)
    await type_text(pilot, name)
    if quantity:
        await pilot.press("tab", "backspace")
        await type_text(pilot, quantity)
    await pilot.press("enter")
    await settle(pilot)


async def checkout(pilot) -> None:
    await sign_in(pilot)
    await add_item(pilot, "4550", "green tea", "2")
    await add_item(pilot, "300", "")
    await type_text(pilot, "1299")
    await settle(pilot)


async def checkout_many_items(pilot) -> None:
    await sign_in(pilot)
    app = pilot.app
    for i in range(18):  # each item in one burst: amount, F2, its name, Enter
        burst(app, [*str(100 + i), "f2", *keys_of(f"item {i + 1}"), "enter"])
        await wait_for(pilot, lambda n=i + 1: isinstance(app.screen, CheckoutScreen)
                       and len(app.screen.sale.basket.lines) == n)
    await settle(pilot)


async def item_dialog(pilot) -> None:
    await sign_in(pilot)
    await type_text(pilot, "4550")
    await pilot.press("f2")
    await settle(pilot)
    await type_text(pilot, "green tea")
    await settle(pilot)


async def cash_dialog(pilot) -> None:
    await present(pilot)
    await pilot.press("c")
    await settle(pilot)
    await type_text(pilot, "50")
    await settle(pilot)


async def cash_paid(pilot) -> None:
    await cash_dialog(pilot)
    await pilot.press("enter")
    await settle(pilot)


async def split_paid(pilot) -> None:
    await present(pilot)
    await pilot.press("s")
    await settle(pilot)
    await type_text(pilot, "20")
    await pilot.press("enter")
    await settle(pilot)
    await pilot.press("c")
    await settle(pilot)
    await pilot.press("enter")
    await settle(pilot)


async def present(pilot) -> None:
    await sign_in(pilot)
    await type_text(pilot, "4550")
    await pilot.press("enter")
    await settle(pilot)


async def transactions(pilot) -> None:
    await sign_in(pilot)
    await pilot.press("f4")
    await settle(pilot)


async def refund(pilot) -> None:
    await sign_in(pilot)
    await pilot.press("f5")
    await type_text(pilot, "0002")
    await pilot.press("enter")
    await settle(pilot)


async def void(pilot) -> None:
    await sign_in(pilot)
    await pilot.press("f6")
    await settle(pilot)


async def refund_ambiguous(pilot) -> None:
    await sign_in(pilot)
    await pilot.press("f5")
    await type_text(pilot, "9")  # no such reference
    await pilot.press("enter")
    await settle(pilot)


async def quit_prompt(pilot) -> None:
    await sign_in(pilot)
    await pilot.press("ctrl+q")
    await settle(pilot)


async def day_close(pilot) -> None:
    await sign_in(pilot)
    await pilot.press("f7")
    await settle(pilot)


async def day_closed(pilot) -> None:
    await sign_in(pilot, "sup1", "2222")
    await pilot.press("f7")
    await settle(pilot)
    await pilot.press("f9")
    await settle(pilot)


async def supervisor(pilot) -> None:
    await void(pilot)
    await pilot.press("f9")
    await type_text(pilot, "sup1")
    await settle(pilot)


def result_of(outcome: str, reasons: tuple[str, ...], auth: str, row_index: int | None):
    async def run(pilot) -> None:
        await sign_in(pilot)
        rows = pilot.app.service.require_journal().txns.recent(10)
        row = sorted(rows, key=lambda r: r.seq)[row_index] if row_index is not None else None
        amount = row.amount if row is not None else Money(150000, pilot.app.service.currency)
        sale = SaleOutcome(outcome=outcome, amount=amount, reasons=reasons, auth_mode=auth, row=row,
                           masked_pan="622202******1234", no_pinpad=outcome == "need_cvm")
        await pilot.app.push_screen(pilot.app.make(ResultScreen, sale))
        await settle(pilot)

    return run


async def receipt(pilot) -> None:
    await sign_in(pilot)
    rows = sorted(pilot.app.service.require_journal().txns.recent(10), key=lambda r: r.seq)
    await pilot.app.push_screen(pilot.app.make(ReceiptScreen, rows[1]))
    await settle(pilot)


SCREENS = {
    "signin": nothing,
    "checkout": checkout,
    "checkout_many_items": checkout_many_items,
    "item_dialog": item_dialog,
    "present": present,
    "cash_dialog": cash_dialog,
    "cash_paid": cash_paid,
    "split_paid": split_paid,
    "approved": result_of("approved", ("below_floor_limit",), "offline", 1),
    "declined": result_of("declined", ("backend_unreachable", "above_floor_limit", "offline_payment_cap_exceeded"),
                          "offline", 2),
    "need_cvm": result_of("need_cvm", ("cvm_required",), "none", None),
    "receipt": receipt,
    "transactions": transactions,
    "refund": refund,
    "refund_not_found": refund_ambiguous,
    "void": void,
    "supervisor": supervisor,
    "day_close": day_close,
    "day_closed": day_closed,
    "quit": quit_prompt,
}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare, app_factory, staffed, screen, locale, size):
    seed(staffed)
    app = app_factory(locale=locale)
    assert snap_compare(app, terminal_size=SIZES[size], run_before=SCREENS[screen])
