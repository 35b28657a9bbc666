"""A merchant QR code belongs to the terminal that registered it, from the moment it is registered
(before it is shown): another terminal can neither learn its state, nor close it, nor take it over,
whether it asks before or after the owner registered it; a reference nobody registered does not
exist. Two enrolled terminals against the real sandbox over HTTP."""

from __future__ import annotations

import pytest

from terminal.backend import BackendRefused
from terminal.checkout import Checkout, PaymentInterpreter
from terminal.core.money import Money
from tests.merchant_codes import post_registration

AMOUNT = 4250
OTHER = "OTHER001"


@pytest.fixture
def checkout(enrolled):
    made = Checkout(enrolled.payments, PaymentInterpreter(enrolled.cards), enrolled.merchant_codes)  # no devices
    yield made
    made.close()


@pytest.fixture
def other(sandbox, make_service, tmp_path):
    """A second terminal, enrolled with the same backend."""
    svc = make_service(sandbox.url, data_dir=tmp_path / "other", terminal={"id": OTHER})
    svc.enrol_backend(sandbox.admin.enrolment_token(OTHER))
    return svc


def refused(attempt) -> str:
    """Run a terminal request that should be refused: 'STATUS code' when it is, else what the backend
    answered (the code's status, handed to the terminal)."""
    try:
        answer = attempt()
    except BackendRefused as refusal:
        return f"{refusal.status} {refusal.code}"
    return f"answered {answer.status}"


def test_another_terminal_can_neither_see_nor_close_nor_take_a_code(sandbox, enrolled, other, checkout):
    # terminal A makes the code: it is registered as A's before it is shown (the backend used to give a
    # reference to whichever terminal asked about it first)
    qr = checkout.merchant_qr(Money(AMOUNT, enrolled.currency), "op1")
    ref = qr.reference
    attempts = {
        "status": lambda: other.payment_status(ref),
        "cancel": lambda: other.cancel_merchant_payment(ref),
    }
    after = {name: refused(attempt) for name, attempt in attempts.items()}
    taken = post_registration(other, ref, qr.amount, qr.valid_until)
    with pytest.raises(RuntimeError, match=r"404.*payment_not_found"):  # the app pays a code naming B
        sandbox.admin.mark_paid(ref, AMOUNT, "CNY", "tokWallet", terminal_id=OTHER)
    print(f"\nterminal B's tries on A's code: {len(after) + 2}, all refused: {after}, registering it "
          f"{taken.status_code} {taken.json()['error']}, paying it as B's: 404")
    assert set(after.values()) == {"404 payment_not_found"}, f"terminal B was handed terminal A's code: {after}"
    assert taken.status_code == 409 and taken.json()["error"] == "reference_taken"
    status = enrolled.payment_status(ref)
    assert status.status == "pending"  # B changed nothing
    sandbox.admin.mark_paid(ref, None, None, "tokWallet", terminal_id=enrolled.config.terminal.id)
    status = enrolled.payment_status(ref)
    assert (status.status, status.amount, status.currency) == ("paid", AMOUNT, "CNY")  # what the code asked
    assert refused(lambda: other.payment_status(ref)) == "404 payment_not_found"


def test_a_reference_nobody_registered_does_not_exist(sandbox, enrolled):
    ref = "0NEVERREGISTERED000000000"
    answers = {"status": refused(lambda: enrolled.payment_status(ref)),
               "cancel": refused(lambda: enrolled.cancel_merchant_payment(ref))}
    with pytest.raises(RuntimeError, match=r"404.*payment_not_found"):
        sandbox.admin.mark_paid(ref, AMOUNT, "CNY", "tokWallet")  # the wallet app cannot pay it either
    print(f"\nunregistered reference: {answers}")
    assert set(answers.values()) == {"404 payment_not_found"}


def test_registering_again_is_idempotent_and_the_terms_are_bound(sandbox, enrolled, checkout):
    qr = checkout.merchant_qr(Money(AMOUNT, enrolled.currency), "op1")  # registered by the terminal (201)
    first = post_registration(enrolled, qr.reference, qr.amount, qr.valid_until)
    again = post_registration(enrolled, qr.reference, qr.amount, qr.valid_until)
    other_amount = post_registration(enrolled, qr.reference, Money(AMOUNT + 1, enrolled.currency), qr.valid_until)
    print(f"\nregister again: {first.status_code}, {again.status_code}, other amount: {other_amount.status_code}")
    assert first.status_code == 200 and again.status_code == 200 and again.json() == first.json()
    code = first.json()
    assert {k: code[k] for k in ("reference", "amount", "currency", "status")} == {
        "reference": qr.reference, "amount": AMOUNT, "currency": "CNY", "status": "pending"}
    assert code["valid_until"] == qr.valid_until.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert other_amount.status_code == 409 and other_amount.json()["error"] == "reference_reused"
    sandbox.admin.mark_paid(qr.reference, AMOUNT, "CNY", "tokWallet")
    paid_again = post_registration(enrolled, qr.reference, qr.amount, qr.valid_until)
    assert paid_again.status_code == 200 and paid_again.json()["status"] == "paid"
