"""Online authorisation in the payment flow, against the real sandbox: the offline answer is decided
first, the backend is asked with a deadline, and a late or failed backend can only lead to that
offline answer. The journal records which path decided."""

from __future__ import annotations

import pytest

from terminal.backend import CircuitBreaker
from terminal.core.money import Money
from terminal.core.rules import Decision, Method, PaymentRequest
from terminal.payment import CardFacts
from terminal.security import seal_for_backend
from tests.backend.conftest import TERMINAL, pay

pytestmark = pytest.mark.timeout(60)

ABOVE_FLOOR = 25000  # 250.00: above the 100.00 floor limit, within the 300.00 offline cap


def auth_requests(sandbox) -> int:
    return sandbox.admin.stats(TERMINAL)["faults"]["requests"].get("/v1/authorisations", 0)


def test_approved_online_with_auth_code(sandbox, enrolled):
    result = pay(enrolled, ABOVE_FLOOR, "tokOn")
    assert result.approved and result.auth_mode == "online" and result.message == "Approved by the backend."
    assert result.row.auth_mode == "online" and len(result.row.details["auth_code"]) == 6
    assert sandbox.admin.stats()["authorisations"] == 1
    assert enrolled.sync_once().accepted == 1  # online-approved rows are uploaded like the others


def test_declined_online_by_the_backend(sandbox, enrolled):
    """Denied at the backend but not yet on this terminal's list: the backend's decline decides."""
    sandbox.admin.deny("tokHot")
    result = pay(enrolled, ABOVE_FLOOR, "tokHot")
    assert not result.approved and result.auth_mode == "online"
    assert result.reasons == ("above_floor_limit", "deny_listed")
    row = enrolled.require_journal().txns.get(result.row.id)
    assert row.decision == "declined" and row.auth_mode == "online"


def test_below_the_floor_limit_the_backend_is_not_asked(sandbox, enrolled):
    result = pay(enrolled, 5000, "tokSmall")
    assert result.approved and result.auth_mode == "offline"
    assert auth_requests(sandbox) == 0


def test_a_late_backend_cannot_change_the_offline_answer(sandbox, enrolled):
    """The backend would decline (out of funds) but answers after the deadline: the offline answer
    decided before asking stands (approved offline as fallback). The upload then tells the terminal
    the truth: declined after offline approval, and the card is denied from then on."""
    sandbox.admin.out_of_funds("tokSlow")
    sandbox.admin.faults(latency_ms=1500, paths=["/v1/authorisations"])
    request = PaymentRequest(Money(ABOVE_FLOOR, enrolled.currency), Method.CARD, card_token="tokSlow")
    outcome, _ = enrolled.explain(request)
    assert outcome.decision is Decision.GO_ONLINE and outcome.fallback is Decision.APPROVE_OFFLINE
    result = enrolled.pay(request, CardFacts(masked_pan="622202******9999", card_token="tokSlow"))
    assert result.approved and result.auth_mode == "offline_fallback"
    assert result.reasons == tuple(outcome.offline_answer().reasons)
    assert "did not answer in time" in result.message
    assert result.timings_ms["online"] < 1500  # the payment did not wait for the late answer
    assert enrolled.require_journal().txns.get(result.row.id).auth_mode == "offline_fallback"
    sandbox.admin.faults_off()
    report = enrolled.sync_once()
    assert report.declined_after_offline == 1 and report.declined[0]["reason"] == "insufficient_funds"
    assert pay(enrolled, 1000, "tokSlow").reasons == ("deny_listed",)


def test_offline_fallback_declines_when_the_offline_limits_forbid(sandbox, enrolled):
    """Above the offline cap the offline answer is a decline: a failing backend cannot approve it."""
    sandbox.admin.faults(rate=1.0, kinds=["error"], paths=["/v1/authorisations"])
    result = pay(enrolled, 50000, "tokCap")  # 500.00 > 300.00 offline cap
    assert not result.approved and result.auth_mode == "offline_fallback"
    assert "offline_payment_cap_exceeded" in result.reasons and "backend_unreachable" in result.reasons


def test_an_open_circuit_keeps_the_checkout_off_a_dead_backend(sandbox, enrolled, monkeypatch):
    """After `breaker_failures` failures the checkout stops asking: payments are decided offline at
    once and no further authorisation request reaches the backend."""
    # The circuit's own clock, moved by hand: the service wires a breaker on the real monotonic clock
    # and offers no way to pass another, so the test gives the client a breaker built on its clock.
    now = [1000.0]
    client = enrolled.backend
    monkeypatch.setattr(client, "breaker", CircuitBreaker(client.cfg.breaker_failures,
                                                          client.cfg.breaker_reset_ms / 1000, monotonic=lambda: now[0]))
    sandbox.admin.faults(rate=1.0, kinds=["reset"], paths=["/v1/authorisations"])
    for _ in range(3):
        assert pay(enrolled, ABOVE_FLOOR, "tokR").auth_mode == "offline_fallback"
    asked = auth_requests(sandbox)
    assert asked == 3 and enrolled.payments.online.reachable() is False
    result = pay(enrolled, ABOVE_FLOOR, "tokR")
    assert result.approved and result.auth_mode == "offline" and "online" not in result.timings_ms
    assert auth_requests(sandbox) == asked
    sandbox.admin.faults_off()
    assert client.breaker.state == "open" and enrolled.sync_once(force=False).skipped  # not yet: no probe
    now[0] += 0.09  # breaker_reset_ms is 100 in these tests
    assert client.breaker.state == "open"
    now[0] += 0.02
    assert client.breaker.state == "half_open" and enrolled.payments.online.reachable() is False
    assert enrolled.sync_once(force=False).ok  # the sync worker probes and closes the circuit
    assert enrolled.payments.online.reachable() is True
    assert pay(enrolled, ABOVE_FLOOR, "tokR").auth_mode == "online"


def test_sealed_card_data_reaches_the_backend_only(sandbox, enrolled):
    """Card data sealed to the backend's key is opened by the backend; garbage is declined."""
    key = enrolled.backend_sealing_key()
    assert key is not None and len(key) == 32
    sealed = seal_for_backend(key, b'{"pan":"6222021234567890123","expiry":"2812"}')
    request = PaymentRequest(Money(ABOVE_FLOOR, enrolled.currency), Method.CARD, card_token="tokSeal")
    good = enrolled.pay(request, CardFacts(card_token="tokSeal", masked_pan="622202*********0123", sealed_card=sealed))
    assert good.approved and good.auth_mode == "online"
    forged = seal_for_backend(bytes(32 * [7]), b"not for this backend")
    bad = enrolled.pay(request, CardFacts(card_token="tokSeal", sealed_card=forged))
    assert not bad.approved and "sealed_card_unreadable" in bad.reasons
