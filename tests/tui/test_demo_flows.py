"""The checkout end to end through the TUI with the demo's real parts: the sandbox backend over HTTP
on 127.0.0.1, the simulated camera decoding rendered phone screens, the sync worker. No mocks."""

from __future__ import annotations

import json

import pytest

from terminal.config import config_from_mapping
from terminal.demo import DEMO_CARD_PIN, DEMO_WRONG_PIN, Demo
from terminal.tui.app import make_app
from terminal.tui.screens.checkout import CheckoutScreen
from terminal.tui.screens.present import PresentScreen
from terminal.tui.screens.result import ResultScreen
from terminal.tui.screens.signin import SignInScreen
from tests.tui.conftest import record_notifications, sign_in, type_text, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def demo(tmp_path):
    config = config_from_mapping({"operators": {"idle_sign_out_minutes": 0}})
    demo = Demo(tmp_path / "demo", config)
    demo.start()
    yield demo
    demo.close()


async def show_merchant_code(pilot, journal, amount_digits: str) -> str:
    """Key an amount, press Q: the terminal's merchant code is on screen (and registered with the
    backend, see tests/merchant_codes.py). Returns its reference."""
    await type_text(pilot, amount_digits)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PresentScreen))
    await pilot.press("q")
    await wait_for(pilot, lambda: journal.merchant_codes.still_open())
    return journal.merchant_codes.still_open()[0]["reference"]


async def sell_with_wallet_code(pilot, amount_digits: str) -> ResultScreen:
    app = pilot.app
    await type_text(pilot, amount_digits)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
    await pilot.press("w")
    await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
    return app.screen


async def test_offline_sale_is_queued_and_synced_when_the_network_returns(demo):
    service = demo.service
    app = make_app(service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        assert isinstance(app.screen, CheckoutScreen)
        await pilot.press("ctrl+n")  # pull the network
        await wait_for(pilot, lambda: not demo.network_up)
        result = await sell_with_wallet_code(pilot, "8000")
        assert result.result.outcome == "approved" and result.result.auth_mode == "offline"
        row = result.result.row
        assert service.require_journal().txns.get(row.id).sync_state == "pending"
        await app.refresh_status().wait()
        await pilot.pause()
        assert app.status.queue == 1
        await pilot.press("enter")  # new sale
        await wait_for(pilot, lambda: isinstance(app.screen, CheckoutScreen))
        await pilot.press("ctrl+n")  # restore it
        await wait_for(pilot, lambda: demo.network_up)
        service.sync_once()
        assert service.require_journal().txns.get(row.id).sync_state == "accepted"
        stored = {t["id"] for t in demo.sandbox.admin.transactions(service.config.terminal.id)}
        assert row.id in stored
        await app.refresh_status().wait()
        await pilot.pause()
        assert app.status.queue == 0 and app.status.backend == "online"


async def test_above_the_floor_limit_goes_online(demo):
    app = make_app(demo.service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        result = await sell_with_wallet_code(pilot, "25000")
        assert result.result.outcome == "approved" and result.result.auth_mode == "online"
        assert "approved by the backend" in str(result.query_one("#how").render())


async def test_camera_unplugged_during_a_sale_recovers(demo):
    service = demo.service
    app = make_app(service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await type_text(pilot, "1500")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
        demo.camera.unplug()
        await wait_for(pilot, lambda: service.device_states()[1] == "absent")
        await app.refresh_status().wait()
        await pilot.pause()
        assert app.status.camera == "absent"
        demo.camera.plug()
        await wait_for(pilot, lambda: service.device_states()[1] == "ready")
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        assert app.screen.result.outcome == "approved"


async def test_a_numeric_code_needs_the_backend(demo):
    app = make_app(demo.service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: not demo.network_up)
        await type_text(pilot, "3000")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        result = app.screen.result
        assert result.outcome == "declined" and "online_only_method" in result.reasons
        assert "this way of paying needs the backend" in str(app.screen.query_one("#why").render())


# -- contactless cards on the demo's simulated reader ------------------------------------------------


async def sell_with_card(pilot, amount_digits: str, card_key: str) -> ResultScreen:
    app = pilot.app
    await type_text(pilot, amount_digits)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
    await wait_for(pilot, lambda: app.service.device_states()[0] == "ready")
    await pilot.press(card_key)
    await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
    return app.screen


async def test_card_tap_is_approved_offline_and_journaled(demo):
    app = make_app(demo.service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        result = await sell_with_card(pilot, "1234", "2")  # Mastercard: GENERATE AC
        assert result.result.outcome == "approved" and result.result.auth_mode == "offline"
        row = demo.service.require_journal().txns.get(result.result.row.id)
        assert row.method == "card" and row.scheme == "mastercard" and row.masked_pan == "541333******0434"
        assert "541333******0434" in str(result.query_one("#how").render()) + str(result.query_one("#why").render()) \
            or "0434" in "".join(str(w.render()) for w in result.query("Static"))


async def test_declined_card_shows_why_and_waits_for_another(demo):
    app = make_app(demo.service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        result = await sell_with_card(pilot, "2000", "6")  # the issuer put this card on the deny list
        assert result.result.outcome == "declined" and "deny_listed" in result.result.reasons
        assert "blocked" in str(result.query_one("#why").render())
        await pilot.press("escape")  # back to the same sale: another card
        await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        assert app.screen.result.outcome == "approved"


async def test_unreadable_card_asks_for_another_card(demo):
    app = make_app(demo.service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        result = await sell_with_card(pilot, "500", "7")  # answers garbage
        assert result.result.outcome == "try_another_card"
        assert list(demo.service.export_journal(None)) == [] or all(
            r["method"] != "card" for r in list(demo.service.export_journal(None)))


async def test_reader_pulled_during_a_sale_recovers(demo):
    service = demo.service
    app = make_app(service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await type_text(pilot, "1500")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
        await wait_for(pilot, lambda: service.device_states()[0] == "ready")
        await pilot.press("ctrl+r")  # unplug the reader
        await wait_for(pilot, lambda: service.device_states()[0] == "absent")
        await app.refresh_status().wait()
        await pilot.pause()
        assert app.status.reader == "absent"
        await pilot.press("1")  # a tap on an unplugged reader reads nothing
        assert demo.reader.pending_taps == 0  # not seen: nothing is left to read once it is plugged in
        assert isinstance(app.screen, PresentScreen)
        await pilot.press("ctrl+r")  # plug it back in
        await wait_for(pilot, lambda: service.device_states()[0] == "ready")
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        assert app.screen.result.outcome == "approved"


async def pin_asked_on_the_pad(pilot, demo, amount_digits: str) -> None:
    """Key an amount at or above the CVM limit and tap the Visa card: the PIN pad asks the customer."""
    app = pilot.app
    await type_text(pilot, amount_digits)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
    await wait_for(pilot, lambda: app.service.device_states()[0] == "ready")
    await pilot.press("1")
    await wait_for(pilot, lambda: demo.pinpad.waiting.is_set())
    assert "PIN pad" in str(app.screen.query_one("#prompt").render())


@pytest.mark.parametrize("right", [True, False])
async def test_card_above_the_cvm_limit_takes_the_pin_on_the_pin_pad(demo, right):
    """At 1,500.00 (the CVM limit) the customer's PIN is typed on the PIN pad, sealed there to the
    backend's key, and checked by the backend: the right PIN is approved online, a wrong one is
    declined (the sandbox holds each card's test PIN). The cashier's screen only says a PIN was
    entered; the PIN is in no widget, no journal row and no log."""
    app = make_app(demo.service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await pin_asked_on_the_pad(pilot, demo, "150000")
        assert demo.customer_display.current.kind == "pin"
        await pilot.press("k" if right else "j")  # the customer types on the pad (demo key)
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        final = app.screen.result
        assert final.auth_mode == "online" and "online_pin" in final.reasons
        if right:
            assert final.outcome == "approved"
        else:
            assert final.outcome == "declined" and "incorrect_pin" in final.reasons
            assert "PIN is not correct" in str(app.screen.query_one("#why").render())
        shown = "\n".join(str(w.render()) for s in app.screen_stack for w in s.query("Static"))
        assert DEMO_CARD_PIN not in shown and DEMO_WRONG_PIN not in shown
        row = demo.service.require_journal().txns.get(final.row.id)
        assert DEMO_CARD_PIN not in json.dumps(row.to_dict()) and "sealed_pin" not in row.details


async def test_the_customer_cancels_on_the_pin_pad_and_the_sale_goes_on(demo):
    app = make_app(demo.service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await pin_asked_on_the_pad(pilot, demo, "150000")
        await pilot.press("l")  # the customer cancels on the pad
        await wait_for(pilot, lambda: "cancelled on the PIN pad" in str(app.screen.query_one("#message").render()))
        assert isinstance(app.screen, PresentScreen) and app.screen.amount.minor == 150000
        assert list(demo.service.export_journal(None)) == []  # nothing was paid or declined


async def test_merchant_code_paid_while_shown_and_paid_just_before_the_cashier_cancelled(demo):
    """Q shows the terminal's merchant code; the sandbox plays the customer's wallet app. Paid while
    shown: the result screen. Paid just before Escape: the sale is still recorded and the cashier is
    told. Cancelled unpaid: the code is closed at the backend and can no longer be paid."""
    service, admin = demo.service, demo.sandbox.admin
    journal = service.require_journal()
    app = make_app(service, demo=demo, status_interval=None)
    told = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")

        await show_merchant_code(pilot, journal, "3300")
        await pilot.press("P")  # demo key (either case, Caps Lock on or off): the wallet app pays the code on screen
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        assert app.screen.result.outcome == "approved" and app.screen.result.reasons == ("paid_in_wallet_app",)
        assert journal.merchant_codes.still_open() == []
        await pilot.press("enter")  # new sale
        await wait_for(pilot, lambda: isinstance(app.screen, CheckoutScreen))

        # paid, and the cashier gives up at once: the screen must not ask the backend in between (its
        # 1-second poll would then show the sale as a result), so the poll is slowed for this part
        service.checkout.merchant_poll_s = 3600.0
        reference = await show_merchant_code(pilot, journal, "4400")
        admin.mark_paid(reference, 4400, "CNY", "tokWalletApp")
        # the backend is slow to close the code: the payment screen is gone when the answer comes
        admin.faults(latency_ms=1500, paths=[f"/v1/payments/{reference}/cancel"])
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckoutScreen), timeout=1.2)
        await wait_for(pilot, lambda: not journal.merchant_codes.still_open())
        await wait_for(pilot, lambda: any("just before it was closed" in n.message for n in told))
        admin.faults_off()
        late = [r for r in journal.txns.rows_since() if r.details.get("reference") == reference]
        assert len(late) == 1 and late[0].approved and late[0].amount.minor == 4400
        # the sale is paid: the amount is cleared, so that Enter does not charge the customer again
        await wait_for(pilot, lambda: not app.screen.total().is_positive)
        assert "paid after all" in str(app.screen.query_one("#message").render())

        reference = await show_merchant_code(pilot, journal, "5500")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not journal.merchant_codes.still_open())
        assert service.payment_status(reference).status == "cancelled"
        assert app.screen.total().minor == 5500  # cancelled unpaid: the sale is kept for another try
        with pytest.raises(RuntimeError, match="payment_cancelled"):
            admin.mark_paid(reference, 5500, "CNY", "tokWalletApp")
        assert [r.amount.minor for r in journal.txns.rows_since() if r.method == "merchant_qr"] == [3300, 4400]


async def hold_the_answer_to_a_paid_code(pilot, demo, amount_digits: str) -> str:
    """Show a merchant code; the sandbox holds the terminal's next question about it for 2.5 s, and
    the customer pays meanwhile: the held answer will say "paid". Returns the code's reference."""
    service, admin = demo.service, demo.sandbox.admin
    journal = service.require_journal()
    service.checkout.merchant_poll_s = 0.05
    reference = await show_merchant_code(pilot, journal, amount_digits)
    path = f"/v1/payments/{reference}"
    admin.faults(latency_ms=2500, paths=[path])  # the sandbox holds each question 2.5 s, then answers
    asked = admin.fault_state()["requests"].get(path, 0)
    await wait_for(pilot, lambda: admin.fault_state()["requests"].get(path, 0) > asked + 1, timeout=10)
    # a question that came after the plan is held at the sandbox: its answer will say "paid"
    admin.mark_paid(reference, int(amount_digits), "CNY", "tokWalletApp")
    return reference


@pytest.mark.parametrize("leave", ["escape", "idle_sign_out"])
async def test_the_answer_paid_comes_after_the_payment_screen_was_left(demo, leave):
    """The customer pays the code on screen while the terminal's question about it is on its way; the
    cashier presses Escape, or the idle timer signs the operator out, before the answer is back. The
    screen is left at once; the answer (paid) still journals the sale, once, and is told on a
    notification, never as a result screen over what is shown now; nothing is left open."""
    service, admin = demo.service, demo.sandbox.admin
    journal = service.require_journal()
    app = make_app(service, demo=demo, status_interval=None)
    told = record_notifications(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        reference = await hold_the_answer_to_a_paid_code(pilot, demo, "6600")
        if leave == "escape":
            await pilot.press("escape")
            home = CheckoutScreen
        else:
            app.sign_out()  # what the idle timer does
            home = SignInScreen
        await wait_for(pilot, lambda: isinstance(app.screen, home), timeout=2)
        await wait_for(pilot, lambda: any("just as the sale was cancelled" in n.message for n in told))
        await app.workers.wait_for_complete()  # the answer's worker is done: nothing more can be shown
        await pilot.pause()
        assert isinstance(app.screen, home) and not any(isinstance(s, ResultScreen) for s in app.screen_stack)
        if leave == "escape":
            assert not app.screen.total().is_positive  # paid: cleared for the next sale
        admin.faults_off()
        rows = [r for r in journal.txns.rows_since() if r.details.get("reference") == reference]
        assert len(rows) == 1 and rows[0].approved and rows[0].amount.minor == 6600
        assert journal.merchant_codes.still_open() == []
        assert service.payment_status(reference).status == "paid"
