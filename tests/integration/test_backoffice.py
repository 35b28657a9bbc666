"""Operators, refunds, voids, day close and receipts on a real journal file."""

from __future__ import annotations

import json
import string
import subprocess
from datetime import timedelta

import pytest

from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.i18n import CATALOGUES, display_width
from terminal.payment import CardFacts
from terminal.receipts import RECEIPT_WIDTH, parse_e_receipt
from terminal.security import verify_signature
from tests.conftest import WALLETPOS


def yuan(svc, text: str) -> Money:
    from terminal.core.money import parse_amount

    return parse_amount(text, svc.currency)


def sell(svc, amount: str, token: str = "tokA", **kw):
    result = svc.pay(PaymentRequest(yuan(svc, amount), Method.CARD, card_token=token),
                     CardFacts(scheme="unionpay", masked_pan="622202******1234"), **kw)
    assert result.approved, result.message
    return result.row


@pytest.fixture
def staff(service):
    ops = service.operators
    ops.add("cash1", "Wang Wei", "cashier", "1111", now=service.clock())
    ops.add("sup1", "Li Na", "supervisor", "2222", now=service.clock())
    return ops


# -- operators ------------------------------------------------------------------------------------


def test_sign_in_wrong_pins_lock_and_expire(service, staff, clock):
    assert service.sign_in("cash1", "1111").ok
    for left in (4, 3, 2, 1):
        check = service.sign_in("cash1", "0000")
        assert (check.ok, check.reason, check.attempts_left) == (False, "wrong_pin", left)
    locked = service.sign_in("cash1", "0000")
    assert locked.reason == "locked" and locked.locked_until == clock.now + timedelta(minutes=15)
    assert service.sign_in("cash1", "1111").reason == "locked"  # the right PIN does not open a lock
    clock.advance(minutes=15)
    assert service.sign_in("cash1", "1111").ok
    assert service.sign_in("cash1", "0000").attempts_left == 4  # counting starts again
    events = [a["event"] for a in service.require_journal().audit.rows(50)]
    assert "operator_locked" in events and "sign_in_refused_locked" in events and "sign_in_ok" in events


def test_unknown_operator_and_unlock(service, staff):
    assert service.sign_in("nobody", "1111").reason == "unknown_operator"
    for _ in range(5):
        service.sign_in("cash1", "9999")
    assert service.sign_in("cash1", "1111").reason == "locked"
    staff.unlock("cash1", now=service.clock(), actor="sup1")
    assert service.sign_in("cash1", "1111").ok


def test_pins_are_stored_hashed(service, staff):
    record = service.require_journal().operators.record("cash1")
    assert "1111" not in json.dumps(record) and len(record["pin_hash"]) == 64


# -- refunds ----------------------------------------------------------------------------------


def test_full_and_partial_refund_never_more_than_the_original(service, staff):
    sale = sell(service, "80.00")
    first = service.refund(sale.id, yuan(service, "30.00"), operator="cash1", supervisor_id="sup1",
                           supervisor_pin="2222")
    assert first.ok and first.row.kind == "refund" and first.row.reference == sale.id
    assert first.row.amount == yuan(service, "30.00") and first.refundable == yuan(service, "50.00")
    over = service.refund(sale.id, yuan(service, "50.01"), operator="cash1", supervisor_id="sup1",
                          supervisor_pin="2222")
    assert not over.ok and over.problems == ("refund_exceeds_original",) and over.row is None
    rest = service.refund(sale.id[:23], None, operator="cash1", supervisor_id="sup1", supervisor_pin="2222")
    assert rest.ok and rest.row.amount == yuan(service, "50.00")
    done = service.refund(sale.id, yuan(service, "0.01"), operator="cash1", supervisor_id="sup1",
                          supervisor_pin="2222")
    assert done.problems == ("refund_exceeds_original",)
    assert service.verify_journal().ok


def test_refund_needs_a_supervisor_pin(service, staff):
    sale = sell(service, "20.00")
    none = service.refund(sale.id, None, operator="cash1", supervisor_id=None, supervisor_pin=None)
    assert none.problems == ("supervisor_pin_required",)
    wrong = service.refund(sale.id, None, operator="cash1", supervisor_id="sup1", supervisor_pin="0000")
    assert wrong.problems == ("supervisor_wrong_pin",) and wrong.supervisor.attempts_left == 4
    cashier = service.refund(sale.id, None, operator="cash1", supervisor_id="cash1", supervisor_pin="1111")
    assert cashier.problems == ("supervisor_not_a_supervisor",)
    assert "wrong supervisor PIN" in wrong.message("en") and "主管密码错误" in wrong.message("zh-CN")
    assert service.require_journal().head().counts()["total"] == 1  # nothing recorded by refused refunds
    events = [a["event"] for a in service.require_journal().audit.rows(50)]
    assert events.count("refund_refused") == 3


def test_refund_window_is_seven_days(service, staff, clock):
    sale = sell(service, "20.00")
    clock.advance(days=7)
    assert service.refund(sale.id, yuan(service, "1.00"), operator=None, supervisor_id="sup1",
                          supervisor_pin="2222").ok
    clock.advance(seconds=1)
    late = service.refund(sale.id, yuan(service, "1.00"), operator=None, supervisor_id="sup1", supervisor_pin="2222")
    assert late.problems == ("refund_window_passed",)
    assert service.require_journal().operators.record("sup1")["failed_attempts"] == 0  # no PIN spent on it


def test_refund_of_unknown_or_declined_sale(service, staff):
    assert service.refund("nope", None, operator=None, supervisor_id="sup1", supervisor_pin="2222").problems == (
        "not_found",)
    service.require_journal().deny_locally("tokC", "test", now=service.clock())
    denied = service.pay(PaymentRequest(yuan(service, "20.00"), Method.CARD, card_token="tokC"), CardFacts())
    assert not denied.approved and denied.row is not None
    result = service.refund(denied.row.id, None, operator=None, supervisor_id="sup1", supervisor_pin="2222")
    assert result.problems == ("original_not_approved",)


# -- voids ------------------------------------------------------------------------------------


def test_void_only_the_last_sale_of_the_day(service, staff, clock):
    first = sell(service, "10.00")
    second = sell(service, "12.00", token="tokB")
    service.refund(first.id, yuan(service, "1.00"), operator=None, supervisor_id="sup1", supervisor_pin="2222")
    no_pin = service.void_last(operator="cash1", supervisor_id=None, supervisor_pin=None)
    assert no_pin.problems == ("supervisor_pin_required",)
    void = service.void_last(operator="cash1", supervisor_id="sup1", supervisor_pin="2222")
    assert void.ok and void.row.kind == "void" and void.row.reference == second.id
    assert void.row.amount == second.amount
    again = service.void_last(operator="cash1", supervisor_id="sup1", supervisor_pin="2222")
    assert again.problems == ("original_voided",)
    refund_voided = service.refund(second.id, None, operator=None, supervisor_id="sup1", supervisor_pin="2222")
    assert refund_voided.problems == ("original_voided",)
    sell(service, "5.00")
    clock.advance(days=1)
    before = service.require_journal().head().counts()["total"]
    late = service.void_last(operator="cash1", supervisor_id="sup1", supervisor_pin="2222")
    assert late.problems == ("other_business_day",) and late.row is None
    assert service.require_journal().head().counts()["total"] == before


# -- day close --------------------------------------------------------------------------------


def test_x_and_z_reports(service, staff):
    a = sell(service, "10.00")
    sell(service, "20.00", token="tokB")
    service.require_journal().deny_locally("tokX", "t", now=service.clock())
    service.pay(PaymentRequest(yuan(service, "5.00"), Method.CARD, card_token="tokX"), CardFacts())
    service.refund(a.id, yuan(service, "4.00"), operator=None, supervisor_id="sup1", supervisor_pin="2222")
    service.require_journal().sync.set_sync_results([(a.id, "declined_after_offline", "insufficient_funds")],
                                               now=service.clock())
    x = service.day_report()
    assert x.z_number is None
    d = x.to_dict()
    assert d["sales"] == {"count": 2, "amount": 3000}
    assert d["refunds"] == {"count": 1, "amount": 400}
    assert d["declined"]["count"] == 1
    assert d["offline_approved"] == {"count": 2, "amount": 3000}
    assert d["declined_after_offline"] == {"count": 1, "amount": 1000}
    assert d["pending_sync"]["count"] == 2  # the second sale and the refund
    assert d["by_method"] == {"card": {"count": 2, "amount": 3000}}
    assert d["net"] == 2600 and d["expected_settlement"] == 1600
    z, paths = service.close_day(operator="sup1")
    assert z.z_number == 1 and z.to_dict()["sales"] == d["sales"]
    assert json.loads(paths[0].read_text())["z_number"] == 1 and "Z-REPORT 1" in paths[1].read_text()
    assert service.day_report().first_seq is None  # the next batch starts empty
    sell(service, "7.00")
    z2, _ = service.close_day(operator="sup1")
    assert z2.z_number == 2 and z2.sales.amount == 700


# -- receipts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_receipt_lines_fit_and_hide_the_card(service, staff, locale):
    row = sell(service, "88.80")
    lines = service.receipt_lines(row, locale)
    assert all(display_width(line) <= RECEIPT_WIDTH + 8 for line in lines)  # reference lines may run long
    text = "\n".join(lines)
    assert "¥88.80" in text and "622202******1234" in text and row.id in text
    assert ("APPROVED" if locale == "en" else "交易成功") in text
    path = service.save_receipt(row)
    assert path.read_text().startswith(lines[0])


def test_e_receipt_is_signed_by_the_terminal(service, staff):
    from terminal.receipts import e_receipt_payload

    sold = sell(service, "9.90")
    service.housekeeping()  # rows are signed shortly after they are written
    row = service.find_transaction(sold.id)
    payload = e_receipt_payload(row, service.config)
    assert payload.startswith("WPR1.") and len(payload) < 600
    data = parse_e_receipt(payload)
    assert (data["r"], data["a"], data["c"], data["h"]) == (row.id, 990, "CNY", row.row_hash)
    assert verify_signature(service.keys.public_key_bytes, bytes.fromhex(data["g"]), bytes.fromhex(data["h"]))


def test_both_locales_have_the_same_messages():
    en, zh = CATALOGUES["en"], CATALOGUES["zh-CN"]
    assert set(en) == set(zh)
    fields = string.Formatter()
    for key in en:
        assert {f for _, f, _, _ in fields.parse(en[key]) if f} == {f for _, f, _, _ in fields.parse(zh[key]) if f}, key


def test_refund_from_the_command_line(cli_env, data_dir):
    from terminal.bootstrap import bootstrap

    svc = bootstrap(config_path=None, data_dir=data_dir, env={})
    svc.operators.add("sup1", "Li Na", "supervisor", "2222", now=svc.clock())
    row = sell(svc, "15.00")
    svc.close()
    proc = subprocess.run([*WALLETPOS, "refund", row.id, "--amount", "5", "--supervisor", "sup1", "--pin-stdin",
                           "--json"], input="2222\n", capture_output=True, text=True, env=cli_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] and out["amount"] == 500
    proc = subprocess.run([*WALLETPOS, "refund", row.id, "--amount", "11", "--supervisor", "sup1", "--pin-stdin"],
                          input="2222\n", capture_output=True, text=True, env=cli_env, timeout=60)
    assert proc.returncode == 10 and "more than what is left" in proc.stderr
