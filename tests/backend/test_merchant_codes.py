"""The terminal's own merchant QR code against the real sandbox backend: recorded before it is shown,
paid while shown, closed when the cashier gives up, and a payment made just before (or while the
backend could not be reached, or while the terminal was down) recorded exactly once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from terminal.checkout import Checkout, PaymentInterpreter
from terminal.core.money import Money
from tests.backend.conftest import TERMINAL

AMOUNT = 4250


@pytest.fixture
def checkout(enrolled):
    made = checkout_of(enrolled)
    yield made
    made.close()


def checkout_of(svc) -> Checkout:
    """A checkout with no reader or camera: only the merchant code."""
    return Checkout(svc.payments, PaymentInterpreter(svc.cards), svc.merchant_codes)


def sales(svc) -> list:
    return [r for r in svc.require_journal().txns.rows_since() if r.method == "merchant_qr"]


def open_codes(svc) -> list[str]:
    return [c["reference"] for c in svc.require_journal().merchant_codes.still_open()]


def show(checkout, svc):
    qr = checkout.merchant_qr(Money(AMOUNT, svc.currency), "op1")
    assert open_codes(svc) == [qr.reference]  # in the journal before anyone can scan it
    assert svc.payment_status(qr.reference).status == "pending"  # and registered as this terminal's
    return qr


def test_a_code_paid_while_shown_is_journaled_once_and_closed(sandbox, enrolled, checkout):
    qr = show(checkout, enrolled)
    seen_asking: list[bool] = []

    def asked() -> int:  # the terminal's questions about this code, as counted by the sandbox
        return sandbox.admin.fault_state()["requests"].get(f"/v1/payments/{qr.reference}", 0)

    def pay_once_the_terminal_asks() -> None:
        """The customer pays while the code is on screen: after the terminal's first question about it."""
        deadline = time.monotonic() + 10
        while asked() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_asking.append(asked() > 0)
        sandbox.admin.mark_paid(qr.reference, AMOUNT, "CNY", "tokWallet")

    paid = threading.Thread(target=pay_once_the_terminal_asks)
    paid.start()
    result = checkout.wait_merchant_qr(qr, cancel=threading.Event(), operator="op1", poll_s=0.05)
    paid.join()
    assert seen_asking == [True], "the terminal never asked the backend about its code"
    assert result is not None and result.outcome == "approved" and result.reasons == ("paid_in_wallet_app",)
    assert result.row.id == qr.transaction_id and result.row.card_token == "tokWallet"
    assert open_codes(enrolled) == []
    assert checkout.close_merchant_qr(qr) is not None  # closing again: the same sale, not a second one
    assert [r.id for r in sales(enrolled)] == [qr.transaction_id]


def test_a_code_paid_with_another_amount_is_declined_and_logged(sandbox, enrolled, checkout):
    qr = show(checkout, enrolled)
    sandbox.admin.mark_paid(qr.reference, AMOUNT - 1, "CNY", "tokWallet")
    result = checkout.wait_merchant_qr(qr, cancel=threading.Event(), poll_s=0.01)
    assert result.outcome == "declined" and result.reasons == ("amount_mismatch",)
    assert result.row.details["paid_amount"] == AMOUNT - 1 and open_codes(enrolled) == []


def test_the_cashier_cancels_the_code_is_closed_and_can_no_longer_be_paid(sandbox, enrolled, checkout):
    qr = show(checkout, enrolled)
    cancel = threading.Event()
    cancel.set()
    assert checkout.wait_merchant_qr(qr, cancel=cancel, poll_s=0.01) is None
    assert checkout.close_merchant_qr(qr, "op1") is None
    assert open_codes(enrolled) == [] and sales(enrolled) == []
    assert enrolled.payment_status(qr.reference).status == "cancelled"
    with pytest.raises(RuntimeError, match=r"409.*payment_cancelled"):
        sandbox.admin.mark_paid(qr.reference, AMOUNT, "CNY", "tokWallet")  # the wallet app is refused


def test_paid_just_before_the_cashier_cancelled_is_recorded_not_lost(sandbox, enrolled, checkout):
    qr = show(checkout, enrolled)
    sandbox.admin.mark_paid(qr.reference, AMOUNT, "CNY", "tokWallet")  # between two polls
    late = checkout.close_merchant_qr(qr, "op1")
    assert late is not None and late.outcome == "approved" and late.row.id == qr.transaction_id
    assert late.row.operator == "op1" and open_codes(enrolled) == []
    assert [r.id for r in sales(enrolled)] == [qr.transaction_id]
    assert enrolled.require_journal().verify().ok


def test_backend_busy_at_cancel_then_the_sync_worker_settles_the_code_exactly_once(sandbox, enrolled, checkout):
    qr = show(checkout, enrolled)
    # refused before the backend looked at it: the code is still payable
    sandbox.admin.faults(rate=1.0, kinds=["retry_after"], paths=[f"/v1/payments/{qr.reference}/cancel"], count=1)
    assert checkout.close_merchant_qr(qr, "op1") is None  # not closed: the backend did not do it
    assert open_codes(enrolled) == [qr.reference]
    assert enrolled.status()["merchant_codes_open"] == 1  # what a technician sees
    assert any(line.startswith("qr codes  1 merchant code") for line in enrolled.diagnostics())
    sandbox.admin.faults_off()
    sandbox.admin.mark_paid(qr.reference, AMOUNT, "CNY", "tokWallet")  # the customer paid meanwhile
    report = enrolled.sync_once()
    assert report.ok and report.merchant_code_payments == 1
    assert [r.id for r in sales(enrolled)] == [qr.transaction_id] and open_codes(enrolled) == []
    assert enrolled.sync_once().merchant_code_payments == 0  # settled once
    assert enrolled.status()["merchant_codes_open"] == 0
    assert not any(line.startswith("qr codes") for line in enrolled.diagnostics())
    assert len(sales(enrolled)) == 1
    # the sale travels to the backend like any other row, once
    stored = [t["id"] for t in sandbox.admin.transactions(TERMINAL)]
    assert stored.count(qr.transaction_id) == 1


def test_a_cancel_whose_answer_was_lost_is_settled_without_a_sale(sandbox, enrolled, checkout):
    qr = show(checkout, enrolled)
    # processed at the backend, then the answer comes after the terminal stopped waiting
    sandbox.admin.faults(rate=1.0, kinds=["timeout"], timeout_ms=1200, paths=[f"/v1/payments/{qr.reference}/cancel"],
                         count=1)
    assert checkout.close_merchant_qr(qr, "op1") is None
    assert open_codes(enrolled) == [qr.reference]
    sandbox.admin.faults_off()
    with pytest.raises(RuntimeError, match=r"409.*payment_cancelled"):
        sandbox.admin.mark_paid(qr.reference, AMOUNT, "CNY", "tokWallet")
    report = enrolled.sync_once()
    assert report.ok and report.merchant_code_payments == 0
    assert open_codes(enrolled) == [] and sales(enrolled) == []


def test_codes_left_open_by_a_stopped_terminal_are_watched_then_closed(sandbox, make_service, tmp_path, clock):
    lifetime = {"qr": {"merchant_code_minutes": 3}}  # qr.merchant_code_minutes, not the default 10
    first = make_service(sandbox.url, data_dir=tmp_path / "t", use_clock=True, **lifetime)
    first.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
    shown = checkout_of(first)
    paid_later = shown.merchant_qr(Money(AMOUNT, first.currency))
    never_paid = shown.merchant_qr(Money(AMOUNT + 1, first.currency))
    assert never_paid.valid_until - never_paid.created_at == timedelta(minutes=3)
    first.close()  # the terminal stops with both codes on screen
    again = make_service(sandbox.url, data_dir=tmp_path / "t", use_clock=True, **lifetime)
    assert set(open_codes(again)) == {paid_later.reference, never_paid.reference}
    assert again.sync_once().merchant_code_payments == 0  # young codes are watched, not closed
    assert set(open_codes(again)) == {paid_later.reference, never_paid.reference}
    sandbox.admin.mark_paid(paid_later.reference, AMOUNT, "CNY", "tokWallet")
    assert again.sync_once().merchant_code_payments == 1
    assert open_codes(again) == [never_paid.reference]
    clock.advance(seconds=3 * 60 - 1)
    assert again.sync_once().ok and open_codes(again) == [never_paid.reference]  # a second before its end
    assert again.payment_status(never_paid.reference).status == "pending"
    clock.advance(seconds=1)
    assert again.sync_once().merchant_code_payments == 0
    assert open_codes(again) == [] and again.payment_status(never_paid.reference).status == "cancelled"
    assert [r.id for r in sales(again)] == [paid_later.transaction_id]


def test_a_code_on_screen_is_left_to_its_screen(sandbox, enrolled, checkout):
    qr = show(checkout, enrolled)
    enrolled.require_journal().merchant_codes.request_close(qr.reference)
    assert enrolled.sync_once().ok
    assert open_codes(enrolled) == [qr.reference]  # the sync worker does not close a code being shown
    assert enrolled.payment_status(qr.reference).status == "pending"


def test_a_code_that_cannot_be_recorded_is_not_shown(enrolled, checkout, tmp_path):
    import sqlite3

    db = sqlite3.connect(str(enrolled.require_journal().path))
    db.execute("CREATE TRIGGER no_codes BEFORE INSERT ON merchant_codes BEGIN SELECT RAISE(FAIL, 'disk full'); END")
    db.close()
    from terminal.errors import StorageError

    with pytest.raises(StorageError, match="merchant code"):
        checkout.merchant_qr(Money(AMOUNT, enrolled.currency))
    assert open_codes(enrolled) == []


def test_timestamps_use_the_service_clock(sandbox, make_service, tmp_path, clock):
    svc = make_service(sandbox.url, data_dir=tmp_path / "c", use_clock=True)
    svc.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
    svc.merchant_qr(Money(AMOUNT, svc.currency))
    (code,) = svc.require_journal().merchant_codes.still_open()
    assert code["shown_at"] == clock.now and code["close_requested"] is False
    clock.advance(seconds=1)
    assert (clock.now - code["shown_at"]) == timedelta(seconds=1)


def test_walletpos_qr_registers_prints_draws_and_writes_a_png_that_decodes(sandbox, tmp_path, cli_env):
    """`walletpos qr` on an enrolled terminal: the code is registered as this terminal's, printed,
    drawn in the terminal and written as a PNG that decodes to the same payload."""
    import json
    from datetime import datetime

    import cv2

    from drivers.qrdecode import Pipeline
    from terminal.core import qrpay
    from tests.backend.test_sync_cli import run, write_config

    cli_env["WALLETPOS_CONFIG"] = str(write_config(tmp_path / "terminal.toml", sandbox.url))
    run(cli_env, "backend", "enrol", "--token", sandbox.admin.enrolment_token(TERMINAL))
    png = tmp_path / "pay.png"
    out = json.loads(run(cli_env, "qr", "--amount", "12.34", "--json", "--png", str(png)).stdout)
    code = qrpay.parse_mpm(out["payload"])
    assert code.amount_text == "12.34" and code.currency_numeric == "156" and code.reference == out["reference"]
    assert out["amount"] == 1234 and out["currency"] == "CNY"
    shown_at, valid_until = (datetime.fromisoformat(out[k].replace("Z", "+00:00"))
                             for k in ("created_at", "valid_until"))
    assert valid_until - shown_at == timedelta(minutes=10)  # qr.merchant_code_minutes default
    assert Pipeline().decode(cv2.imread(str(png))).text == out["payload"]
    sandbox.admin.mark_paid(out["reference"], None, None, "tokWallet", terminal_id=TERMINAL)  # registered: payable
    text = run(cli_env, "qr", "--amount", "5").stdout
    assert "▀" in text or "▄" in text  # drawn with half blocks
    assert "payload    000201010212" in text and "¥5.00" in text
    assert "valid to   " in text and "qr.merchant_code_minutes" in text
