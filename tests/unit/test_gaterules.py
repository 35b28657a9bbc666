"""The gate rules (terminal/core/gaterules.py), pure: each rule at its boundary, their order, and the
sentence the passenger reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from terminal.core.fares import CardState
from terminal.core.gaterules import (
    GateFacts,
    GatePolicy,
    LastTap,
    TransitCard,
    after_tap,
    check,
    passenger_sign,
)

NOW = datetime(2026, 11, 23, 2, tzinfo=UTC)
POLICY = GatePolicy(same_tap=timedelta(seconds=2), anti_passback=timedelta(seconds=300),
                    max_sync_age=timedelta(hours=72), first_rides_unconfirmed=1, exposure_cap=10_000)


def facts(**changes) -> GateFacts:
    values = {"now": NOW, "last_sync_at": NOW - timedelta(hours=1), "deny_listed": False}
    values.update(changes)
    return GateFacts(**values)


def card_after(seconds_ago: float, *, gate: str = "A-01", station: str = "PSQ", direction: str = "entry",
               approved: bool = True, confirmed: bool = True) -> TransitCard:
    last = LastTap(gate, station, direction, NOW - timedelta(seconds=seconds_ago), approved, "row1")
    return TransitCard(CardState(), last, last if approved else None, confirmed, () if confirmed else ("row1",))


KNOWN = TransitCard(confirmed=True)


def decide(card: TransitCard = KNOWN, direction: str = "entry", **fact_changes):
    return check(POLICY, card, gate="A-01", station="PSQ", direction=direction, facts=facts(**fact_changes))


@pytest.mark.parametrize(("seconds", "same"), [(0.0, True), (2.0, True), (2.001, False)])
def test_the_same_tap_within_two_seconds(seconds, same):
    result = decide(card_after(seconds))
    assert (result.same_tap is not None) is same
    if same:
        assert result.allowed and result.reasons == ("same_tap",)
    else:
        assert not result.allowed and result.reasons == ("anti_passback",)


def test_the_same_tap_at_another_gate_is_a_new_tap():
    result = decide(card_after(1, gate="A-02"))
    assert result.same_tap is None and result.reasons == ("anti_passback",)


@pytest.mark.parametrize(("seconds", "direction", "station", "allowed"), [
    (300, "entry", "PSQ", False), (300.001, "entry", "PSQ", True),  # the boundary is inclusive
    (10, "exit", "PSQ", True),  # the other direction (a change of mind) is no passback
    (10, "entry", "CTP", True),  # another station
])
def test_anti_passback(seconds, direction, station, allowed):
    card = card_after(seconds, station=station, gate="X")
    assert decide(card, direction).allowed is allowed


@pytest.mark.parametrize(("changes", "reason"), [
    ({"deny_listed": True}, "deny_listed"),
    ({"card_expired": True}, "card_expired"),
    ({"card_declined": True}, "card_declined"),
    ({"integrity_problem": "edited"}, "journal_integrity"),
    ({"last_sync_at": NOW - timedelta(hours=72, seconds=1)}, "sync_too_old"),
    ({"unsynced_exposure": 10_001}, "exposure_cap_exceeded"),
])
def test_hard_refusals(changes, reason):
    result = decide(**changes)
    assert not result.allowed and result.reasons == (reason,)


def test_sync_age_boundary_and_exposure_cap_boundary_allow():
    assert decide(last_sync_at=NOW - timedelta(hours=72)).allowed
    assert decide(unsynced_exposure=10_000).allowed


def test_hard_refusals_come_before_passback_and_are_all_named():
    result = decide(card_after(10, gate="X"), deny_listed=True, card_expired=True)
    assert result.reasons == ("deny_listed", "card_expired")


def test_first_ride_risk():
    fresh = TransitCard()
    assert decide(fresh).allowed  # an unknown card rides once
    ridden = after_tap(fresh, LastTap("A-01", "PSQ", "entry", NOW - timedelta(hours=1), True, "r1"), CardState(),
                       entry=True)
    assert ridden.unconfirmed == ("r1",)
    assert decide(ridden).reasons == ("first_ride_pending",)
    assert decide(ridden, "exit").allowed  # nobody is kept inside
    assert decide(ridden, ride_states={"r1": "pending"}).reasons == ("first_ride_pending",)
    confirmed = decide(ridden, ride_states={"r1": "accepted"})
    assert confirmed.allowed and confirmed.card is not None and confirmed.card.confirmed
    off = GatePolicy(first_rides_unconfirmed=0)
    assert check(off, ridden, gate="A-01", station="PSQ", direction="entry", facts=facts()).allowed


def test_a_refused_tap_is_remembered_but_opens_no_journey():
    card = TransitCard(confirmed=True)
    refused = after_tap(card, LastTap("A-01", "PSQ", "entry", NOW, False, "r2"), CardState(day_charged=99),
                        entry=True)
    assert refused.last is not None and refused.last_go is None and refused.fares == CardState()


@pytest.mark.parametrize(("reasons", "approved", "sign"), [
    ((), True, "go"), (("anti_passback",), False, "tap_only_once"), (("deny_listed",), False, "card_not_accepted"),
    (("card_expired",), False, "card_not_accepted"), (("sync_too_old",), False, "see_staff"),
    (("first_ride_pending",), False, "see_staff"), (("storage_failure",), False, "see_staff"),
])
def test_what_the_passenger_reads(reasons, approved, sign):
    assert passenger_sign(reasons, approved) == sign


def test_the_card_round_trips_through_plain_values():
    card = card_after(5, confirmed=False)
    assert TransitCard.from_plain(card.to_plain()) == card
