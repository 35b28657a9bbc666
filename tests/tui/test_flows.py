"""Cashier flows through the real TUI (Pilot), in both languages where the words matter."""

from __future__ import annotations

import sqlite3

from textual.widgets import DataTable
from textual.worker import WorkerState

from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts
from terminal.tui.screens.checkout import CheckoutScreen
from terminal.tui.screens.dayclose import DayCloseScreen
from terminal.tui.screens.diagnostics import DiagnosticsScreen
from terminal.tui.screens.refund import RefundScreen, VoidScreen
from terminal.tui.screens.signin import SignInScreen
from terminal.tui.screens.transactions import TransactionsScreen
from terminal.tui.widgets import AmountEntry
from tests.tui.conftest import record_notifications, sign_in, type_text, wait_for


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def items_shown(app) -> list[tuple[str, ...]]:
    """The lines of the checkout's items table, as shown."""
    table = app.screen.query_one("#items", DataTable)
    return [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


def sell(service, minor: int, token: str = "tokA"):
    result = service.pay(PaymentRequest(Money(minor, service.currency), Method.CARD, card_token=token),
                         CardFacts(scheme="unionpay", masked_pan="622202******1234"))
    assert result.approved
    return result.row


async def test_sign_in_and_sign_out(app_factory):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, SignInScreen)
        await sign_in(pilot)
        assert isinstance(app.screen, CheckoutScreen) and app.operator.id == "cash1"
        await pilot.press("f10")
        await pilot.pause()
        assert isinstance(app.screen, SignInScreen) and app.operator is None
        await app.workers.wait_for_complete()
    events = [(r["event"], r["actor"]) for r in app.service.require_journal().audit.rows()]
    assert ("sign_out", "cash1") in events


async def test_sign_out_goes_ahead_when_the_journal_cannot_record_it(app_factory, staffed):
    """Full disk at sign-out (a real SQLite error from a trigger): the operator is signed out all the
    same, and the app keeps running (the audit write failed on the event loop and ended it before)."""
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        db = sqlite3.connect(staffed.require_journal().path)
        db.execute("CREATE TRIGGER no_audit BEFORE INSERT ON audit "
                   "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
        db.close()
        await pilot.press("f10")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, SignInScreen) and app.operator is None
    assert ("sign_out", "cash1") not in [(r["event"], r["actor"]) for r in staffed.require_journal().audit.rows()]


async def test_lockout_after_wrong_pins(app_factory, staffed):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await type_text(pilot, "cash1")
        await pilot.press("enter")
        for left in (4, 3, 2, 1):
            await type_text(pilot, "9999")
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert f"Wrong PIN. {left} tries left." in text_of(app, "#message")
        await type_text(pilot, "9999")
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "Too many wrong PINs. Locked until" in text_of(app, "#message")
        await type_text(pilot, "1111")  # the right PIN does not open the lock
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, SignInScreen) and "Locked until" in text_of(app, "#message")


async def test_lockout_message_in_chinese(app_factory):
    app = app_factory(locale="zh-CN")
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "cash1", "0000")
        assert "密码错误，还可尝试 4 次。" in text_of(app, "#message")


async def test_technician_lands_on_diagnostics(app_factory):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot, "tech1", "3333")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, DiagnosticsScreen)
        assert "✓ Journal · integrity: 0 rows verified" in text_of(app, "#report")


async def test_amount_entry_items_and_note(app_factory):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        await type_text(pilot, "1234")
        entry = app.screen.query_one(AmountEntry)
        assert entry.minor == 1234 and "¥12.34" in str(entry.render())
        await pilot.press("backspace")
        assert entry.minor == 123
        await pilot.press("f2")
        await type_text(pilot, "tea")
        await pilot.press("enter")
        await pilot.pause()
        assert entry.minor == 0 and items_shown(app) == [("tea", "1×", "¥1.23")]
        await type_text(pilot, "500")
        await pilot.press("f3")
        await type_text(pilot, "table 4")
        await pilot.press("enter")
        await pilot.pause()
        assert "Note: table 4" in text_of(app, "#note")
        assert "Total  ¥6.23" in text_of(app, "#total")
        await pilot.press("delete")
        assert entry.minor == 0


async def test_charge_without_amount_says_so(app_factory):
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        await pilot.press("enter")
        await pilot.pause()
        assert "Key an amount first." in text_of(app, "#message")


async def test_refund_refused_without_the_supervisor_pin_then_done(app_factory, staffed):
    row = sell(staffed, 8000)
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        await pilot.press("f5")
        await pilot.pause()
        assert isinstance(app.screen, RefundScreen)
        await type_text(pilot, row.id)
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "Left to refund: ¥80.00" in text_of(app, "#original")
        await type_text(pilot, "30.00")
        await pilot.press("enter")  # asks for the supervisor
        await sign_in(pilot, "sup1", "0000")  # the supervisor prompt
        assert "Refund refused: wrong supervisor PIN" in text_of(app, "#message")
        await pilot.press("f9")
        await sign_in(pilot, "sup1", "2222")  # the supervisor prompt
        assert "Refund recorded: ¥30.00" in text_of(app, "#message")
    refunds = [r for r in staffed.require_journal().txns.recent(10) if r.kind == "refund"]
    assert len(refunds) == 1 and refunds[0].amount.minor == 3000 and refunds[0].reference == row.id


async def test_refund_over_the_original_is_refused_before_the_supervisor_is_asked(app_factory, staffed):
    """More than what is left: refused at once, no supervisor PIN asked (and none spent)."""
    from terminal.tui.screens.dialogs import SupervisorPrompt

    row = sell(staffed, 2000)
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        await pilot.press("f5")
        await type_text(pilot, row.id)
        await pilot.press("enter")
        await type_text(pilot, "20.01")
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, SupervisorPrompt)
        assert "Refund refused: more than what is left of the original payment" in text_of(app, "#message")
    assert not [r for r in staffed.require_journal().txns.recent(10) if r.kind == "refund"]


async def test_void_last_sale(app_factory, staffed):
    sell(staffed, 1500)
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        await pilot.press("f6")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, VoidScreen) and "Last sale #0001" in text_of(app, "#last")
        assert "¥15.00" in text_of(app, "#last")
        await pilot.press("f9")
        await sign_in(pilot, "sup1", "2222")  # the supervisor prompt
        assert "Sale voided: ¥15.00" in text_of(app, "#message")


async def test_transactions_search_and_refund_from_list(app_factory, staffed):
    sell(staffed, 1000, "tokA")
    second = sell(staffed, 2500, "tokB")
    app = app_factory()
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot)
        await pilot.press("f4")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, TransactionsScreen) and len(app.screen.rows) == 2
        await pilot.press("slash")
        await type_text(pilot, second.id[:23])  # the start of an id is its millisecond; two sales may share it
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [r.id for r in app.screen.rows] == [second.id]
        await pilot.press("enter")
        await pilot.press("f5")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, RefundScreen)
        assert "Left to refund: ¥25.00" in text_of(app, "#original")


async def test_day_close_by_a_supervisor(app_factory, staffed):
    sell(staffed, 1000)
    app = app_factory()
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot, "sup1", "2222")
        await pilot.press("f7")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, DayCloseScreen) and "X-REPORT" in text_of(app, "#report")
        await pilot.press("f9")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "Z-REPORT 1" in text_of(app, "#report")
        assert "Batch closed: Z-report 1" in text_of(app, "#message")
    assert list((staffed.data_dir / "reports").glob("Z0001-*.json"))


async def test_every_footer_action_is_in_the_command_palette(app_factory):
    from textual.command import CommandList, CommandPalette

    app = app_factory()
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot)
        screen = app.screen
        shown = {b.description for _, b, enabled, _ in screen.active_bindings.values() if b.show and b.description}
        assert {"Charge", "Item", "Note", "Sales", "Refund", "Void", "Close day", "Sign out"} <= shown
        titles = {c.title for c in app.get_system_commands(screen)}
        assert shown <= titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await type_text(pilot, "Close day")
        await app.workers.wait_for_complete()  # the palette's search

        def close_day_highlighted() -> bool:
            commands = app.screen.query_one(CommandList)
            return commands.highlighted is not None and "Close day" in str(
                commands.get_option_at_index(commands.highlighted).prompt)

        await wait_for(pilot, close_day_highlighted, timeout=5)
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, DayCloseScreen)


async def ask_for_a_refund(pilot, reference: str, amount_text: str) -> None:
    """Sign in as the cashier, F5, look up the sale, key the amount, Enter: the supervisor prompt."""
    await sign_in(pilot)
    await pilot.press("f5")
    await type_text(pilot, reference)
    await pilot.press("enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await type_text(pilot, amount_text)
    await pilot.press("enter")


async def test_a_refund_recorded_after_the_cashier_left_the_screen_is_still_told(app_factory, staffed):
    """Another writer holds the journal (a real SQLite write lock) while the refund waits to be recorded;
    the cashier leaves the refund screen. When the lock is released the refund is recorded, and the
    cashier is told by a notification: the answer is not lost with the screen."""
    row = sell(staffed, 8000)
    app = app_factory()
    told = record_notifications(app)
    holder = sqlite3.connect(staffed.require_journal().path, isolation_level=None, timeout=10)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await ask_for_a_refund(pilot, row.id, "30.00")
            holder.execute("BEGIN IMMEDIATE")
            await type_text(pilot, "sup1")
            await pilot.press("enter")
            await type_text(pilot, "2222")
            await pilot.press("enter")
            await wait_for(pilot, lambda: any(w.name == "run_refund" and w.state is WorkerState.RUNNING
                                              for w in app.workers), timeout=5)  # the refund is under way
            assert isinstance(app.screen, RefundScreen)
            # (the journal is not read from here: this thread runs the app's loop, and would wait too)
            assert holder.execute("SELECT count(*) FROM txn WHERE kind = 'refund'").fetchone() == (0,)
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, RefundScreen)
            holder.execute("COMMIT")
            await wait_for(pilot, lambda: told, timeout=10)  # the worker's thread goes on after its screen was left
            assert any("Refund recorded: ¥30.00" in n.message for n in told), told
    finally:
        holder.close()
    refunds = [r for r in staffed.require_journal().txns.recent(10) if r.kind == "refund"]
    assert len(refunds) == 1 and refunds[0].amount.minor == 3000


async def test_a_refund_the_journal_cannot_record_is_told_and_the_app_goes_on(app_factory, staffed):
    """The journal refuses the write (a real SQLite error from a trigger, as a full disk gives): the
    refund is not done, the cashier is told why, and the terminal keeps running (a failed worker
    would end a Textual app)."""
    row = sell(staffed, 8000)
    db = sqlite3.connect(staffed.require_journal().path)
    db.execute("CREATE TRIGGER no_refunds BEFORE INSERT ON txn WHEN NEW.kind = 'refund' "
               "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
    db.close()
    app = app_factory()
    told = record_notifications(app)
    async with app.run_test(size=(80, 24)) as pilot:
        await ask_for_a_refund(pilot, row.id, "30.00")
        await sign_in(pilot, "sup1", "2222")  # the supervisor prompt
        assert app.is_running and isinstance(app.screen, RefundScreen)
        errors = [n for n in told if n.severity == "error"]
        assert len(errors) == 1 and "disk is full" in errors[0].message, [n.message for n in errors]
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, CheckoutScreen)
    assert not [r for r in staffed.require_journal().txns.recent(10) if r.kind == "refund"]
