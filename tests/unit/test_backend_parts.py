"""Small parts of the backend link, without a network: the request-signature header, the circuit
breaker, Retry-After, strict answer reading, how backend limits combine with local ones, and the
sandbox's fault plans."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sandbox.faults import FaultInjector, FaultPlan
from terminal.backend import BackendAnswerError, CircuitBreaker, _Answer, _retry_after
from terminal.config import config_from_mapping
from terminal.core.backend_limits import BackendLimits, tighten
from terminal.core.money import Money
from terminal.core.rules import RuleSet
from terminal.wire import (
    EMPTY_BODY_SHA256,
    AuthorizationFormatError,
    body_sha256,
    format_authorization,
    new_nonce,
    parse_authorization,
    signing_bytes,
)

# -- request signatures ----------------------------------------------------------------------------


def test_authorization_header_round_trip_and_signed_bytes():
    key = Ed25519PrivateKey.generate()
    message = signing_bytes("WPOS0001", "post", "/v1/deny-list?since=3", 1795424150575, "n" * 24, body_sha256(b"{}"))
    assert message.split(b"\n") == [b"WPOS1-Ed25519", b"WPOS0001", b"POST", b"/v1/deny-list?since=3",
                                    b"1795424150575", b"n" * 24, body_sha256(b"{}").encode()]
    header = format_authorization("WPOS0001", 1795424150575, "n" * 24, key.sign(message))
    parsed = parse_authorization(header)
    assert (parsed.terminal_id, parsed.ts_ms, parsed.nonce) == ("WPOS0001", 1795424150575, "n" * 24)
    key.public_key().verify(parsed.signature, message)
    assert body_sha256(b"") == body_sha256(None) == EMPTY_BODY_SHA256
    assert len({new_nonce() for _ in range(100)}) == 100 and len(new_nonce()) == 24


@pytest.mark.parametrize("header, problem", [
    (None, "not signed"),
    ("Basic dXNlcjpwYXNz", "scheme must be WPOS1-Ed25519"),
    ("WPOS1-Ed25519 terminal=WPOS0001,ts=1,nonce=abcdefghijklmnop", "once each"),
    ("WPOS1-Ed25519 terminal=WPOS0001,ts=1,ts=2,nonce=abcdefghijklmnop,sig=" + "0" * 128, "once each"),
    ("WPOS1-Ed25519 terminal=WPOS00012,ts=1,nonce=abcdefghijklmnop,sig=" + "0" * 128, "terminal is malformed"),
    ("WPOS1-Ed25519 terminal=WPOS0001,ts=-1,nonce=abcdefghijklmnop,sig=" + "0" * 128, "ts is malformed"),
    ("WPOS1-Ed25519 terminal=WPOS0001,ts=1,nonce=short,sig=" + "0" * 128, "nonce is malformed"),
    ("WPOS1-Ed25519 terminal=WPOS0001,ts=1,nonce=abcdefghijklmnop,sig=" + "G" * 128, "sig is malformed"),
])
def test_malformed_authorization_headers_are_named(header, problem):
    with pytest.raises(AuthorizationFormatError, match=problem):
        parse_authorization(header)


# -- circuit breaker -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_circuit_breaker_opens_probes_and_closes():
    clock = Clock()
    breaker = CircuitBreaker(3, 30.0, monotonic=clock)
    assert breaker.state == "closed" and breaker.allows_checkout() and breaker.allows_probe()
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # failures must be consecutive
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allows_checkout() and not breaker.allows_probe()
    assert breaker.seconds_until_probe() == 30.0
    clock.t += 29.9
    assert breaker.state == "open"
    clock.t += 0.1
    # half-open: the sync worker may probe, the checkout still does not wait on the backend
    assert breaker.state == "half_open" and breaker.allows_probe() and not breaker.allows_checkout()
    breaker.record_failure()  # the probe failed: open for another full period
    assert breaker.state == "open" and breaker.seconds_until_probe() == 30.0
    clock.t += 30
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allows_checkout() and breaker.consecutive_failures == 0


# -- Retry-After and answers -----------------------------------------------------------------------


def test_retry_after_seconds_and_http_dates():
    assert _retry_after("120") == 120.0
    assert _retry_after(None) is None and _retry_after("soon") is None and _retry_after("") is None
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert 85 <= _retry_after(later) <= 90
    assert _retry_after("Mon, 01 Jan 2001 00:00:00 GMT") == 0.0


def test_answers_are_read_strictly():
    answer = _Answer({"version": 3, "flag": True, "name": "x", "none": None, "when": "2026-11-23T07:33:00.1Z"}, "t")
    assert answer.int("version") == 3 and answer.bool("flag") and answer.opt_str("none") is None
    assert answer.time("when") == datetime(2026, 11, 23, 7, 33, 0, 100000, tzinfo=UTC)
    for call, message in ((lambda: answer.int("flag"), "field flag must be a whole number"),
                          (lambda: answer.int("missing"), "field missing is missing"),
                          (lambda: answer.bool("version"), "must be true or false"),
                          (lambda: answer.str("name", choices=("a", "b")), "one of a, b"),
                          (lambda: answer.time("name"), "UTC timestamp"),
                          (lambda: _Answer([1, 2], "list answer"), "expected a JSON object")):
        with pytest.raises(BackendAnswerError, match=message):
            call()


# -- backend limits --------------------------------------------------------------------------------


def local_rules() -> RuleSet:
    return RuleSet.from_config(config_from_mapping({}))


def test_backend_limits_can_only_tighten():
    local = local_rules()
    values = {"floor_limit": 5000, "cvm_required_limit": 200000, "contactless_transaction_limit": None,
              "offline_max_payment": 20000, "card_daily_amount": None, "card_daily_count": 20,
              "exposure_cap": 100, "max_hours_since_sync": 6}
    result = tighten(local, BackendLimits(4, "CNY", values))
    assert result.problem is None
    assert result.applied == ("floor_limit", "offline_max_payment", "exposure_cap", "max_hours_since_sync")
    rules = result.rules
    assert rules.floor_limit == Money(5000, local.currency) and rules.offline_max_payment.minor == 20000
    assert rules.cvm_required_limit == local.cvm_required_limit  # 2000.00 from the backend is looser
    assert rules.card_daily_count == local.card_daily_count  # 20 is looser than 10
    assert rules.exposure_cap.minor == 100 and rules.max_sync_age == timedelta(hours=6)
    assert rules.contactless_transaction_limit == local.contactless_transaction_limit  # not set by the backend


def test_backend_limits_in_another_currency_are_not_applied():
    local = local_rules()
    result = tighten(local, BackendLimits(1, "USD", {"floor_limit": 1}))
    assert result.rules == local and result.applied == () and "USD" in result.problem


# -- sandbox fault plans ---------------------------------------------------------------------------


def test_fault_plans_are_validated_and_repeatable():
    for bad, message in (({"rate": 1.5}, "rate"), ({"kinds": ["fire"]}, "kinds"), ({"latency_ms": -1}, "latency_ms"),
                         ({"surprise": 1}, "unknown"), ({"count": "3"}, "count"), ({"cycle": "yes"}, "cycle")):
        with pytest.raises(ValueError, match=message):
            FaultPlan.from_dict(bad)

    def draws(plan: dict) -> list:
        injector = FaultInjector()
        injector.configure(FaultPlan.from_dict(plan))
        return [injector.draw("/v1/heartbeat") for _ in range(200)]

    first = draws({"rate": 0.3, "seed": 7})
    assert first == draws({"rate": 0.3, "seed": 7})
    assert 30 < sum(f is not None for f in first) < 90
    cycled = [f.kind for f in draws({"rate": 1.0, "cycle": True, "count": 10}) if f is not None]
    assert cycled == ["error", "reset", "timeout", "malformed", "retry_after"] * 2
    injector = FaultInjector()
    injector.configure(FaultPlan.from_dict({"rate": 1.0, "paths": ["/v1/transactions"]}))
    assert injector.draw("/v1/heartbeat") is None and injector.draw("/v1/transactions/batches") is not None
