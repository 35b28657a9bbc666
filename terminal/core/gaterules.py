"""Gate rules, pure: whether a tap at a transit gate opens it, before the fare is worked out.

In order:
1. the same tap: the same card at the same gate within `same_tap` (2 s) is one tap read twice (a
   card held in the field, a code seen again): it repeats the first answer, charges nothing and
   opens nothing;
2. hard refusals, whatever the direction: the journal on hold (integrity in doubt), the deny list
   (looked up in O(1) against the journal's authenticated digest), an expired card, a card whose
   own cryptogram declined, a gate offline for longer than `max_sync_age` (its deny list is too
   old to trust), the terminal's unsynced exposure cap;
3. anti-passback: the same card let through at the same station in the same direction within
   `anti_passback` (a card handed back over the gate to the next person) is refused;
4. first-ride risk, tap-ins only: a card this gate has not yet seen accepted by the backend rides
   once; until the backend has accepted that ride, a second tap-in is refused (a card the backend
   declines is on the deny list at the next sync). Tap-outs are never refused for this: nobody is
   kept inside.

Every refusal carries a reason code; the passenger reads one of three sentences (`passenger_sign`):
"card not accepted", "tap only once", or "see staff".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from terminal.core.fares import CardState

Sign = Literal["go", "card_not_accepted", "tap_only_once", "see_staff"]


class GateReason(StrEnum):
    # a GO
    JOURNEY_STARTED = "journey_started"
    FARE_CHARGED = "fare_charged"
    CAP_REACHED = "cap_reached"
    PRICED_BY_BACK_OFFICE = "priced_by_back_office"
    TRANSFER = "transfer"
    FIRST_RIDE = "first_ride"
    # a STOP
    SAME_TAP = "same_tap"
    ANTI_PASSBACK = "anti_passback"
    DENY_LISTED = "deny_listed"
    CARD_EXPIRED = "card_expired"
    CARD_DECLINED = "card_declined"
    CODE_ALREADY_USED = "code_already_used"
    SYNC_TOO_OLD = "sync_too_old"
    JOURNAL_INTEGRITY = "journal_integrity"
    EXPOSURE_CAP_EXCEEDED = "exposure_cap_exceeded"
    FIRST_RIDE_PENDING = "first_ride_pending"


# What the passenger reads for each refusal (anything else, a storage failure or a card that could
# not be read, is "see staff" or "card not accepted" by the gate loop).
_SIGNS: Mapping[str, Sign] = {
    GateReason.ANTI_PASSBACK: "tap_only_once",
    GateReason.SAME_TAP: "tap_only_once",
    GateReason.DENY_LISTED: "card_not_accepted",
    GateReason.CARD_EXPIRED: "card_not_accepted",
    GateReason.CARD_DECLINED: "card_not_accepted",
    GateReason.CODE_ALREADY_USED: "card_not_accepted",
    GateReason.SYNC_TOO_OLD: "see_staff",
    GateReason.JOURNAL_INTEGRITY: "see_staff",
    GateReason.EXPOSURE_CAP_EXCEEDED: "see_staff",
    GateReason.FIRST_RIDE_PENDING: "see_staff",
}


def passenger_sign(reasons: tuple[str, ...], approved: bool) -> Sign:
    """The sentence for the passenger: GO, or the first refusal's sign ("see staff" when unknown)."""
    if approved:
        return "go"
    for reason in reasons:
        sign = _SIGNS.get(reason)
        if sign is not None:
            return sign
    return "see_staff"


@dataclass(frozen=True, slots=True)
class GatePolicy:
    same_tap: timedelta = timedelta(seconds=2)
    anti_passback: timedelta = timedelta(seconds=300)
    max_sync_age: timedelta = timedelta(hours=72)
    first_rides_unconfirmed: int = 1  # rides a card not yet confirmed by the backend may take
    exposure_cap: int | None = None  # minor units; None: no cap


@dataclass(frozen=True, slots=True)
class LastTap:
    """A card's last tap at this terminal (any decision), for the same-tap and passback checks."""

    gate: str
    station: str
    direction: str
    at: datetime
    approved: bool
    row_id: str
    charged: int = 0

    def to_plain(self) -> dict[str, Any]:
        return {"gate": self.gate, "station": self.station, "direction": self.direction, "at": self.at.isoformat(),
                "approved": self.approved, "row_id": self.row_id, "charged": self.charged}

    @classmethod
    def from_plain(cls, value: Mapping[str, Any]) -> LastTap:
        return cls(str(value["gate"]), str(value["station"]), str(value["direction"]),
                   datetime.fromisoformat(value["at"]), bool(value["approved"]), str(value["row_id"]),
                   int(value.get("charged", 0)))


@dataclass(frozen=True, slots=True)
class TransitCard:
    """Everything this terminal remembers about one card (or wallet) in transit: the fare engine's
    state, its last tap, its last tap let through, and whether the backend has confirmed it."""

    fares: CardState = CardState()
    last: LastTap | None = None
    last_go: LastTap | None = None
    confirmed: bool = False  # the backend accepted one of its rides
    unconfirmed: tuple[str, ...] = ()  # row ids of rides taken before it was confirmed

    def to_plain(self) -> dict[str, Any]:
        return {"v": 1, "fares": self.fares.to_plain(), "last": self.last.to_plain() if self.last else None,
                "last_go": self.last_go.to_plain() if self.last_go else None, "confirmed": self.confirmed,
                "unconfirmed": list(self.unconfirmed)}

    @classmethod
    def from_plain(cls, value: Mapping[str, Any]) -> TransitCard:
        return cls(CardState.from_plain(value["fares"]),
                   LastTap.from_plain(value["last"]) if value.get("last") else None,
                   LastTap.from_plain(value["last_go"]) if value.get("last_go") else None,
                   bool(value.get("confirmed")), tuple(value.get("unconfirmed", ())))


@dataclass(frozen=True, slots=True)
class GateFacts:
    """What the journal and the card say at the moment of the tap (read in the decision's transaction)."""

    now: datetime
    last_sync_at: datetime
    deny_listed: bool
    integrity_problem: str | None = None
    card_expired: bool = False
    card_declined: bool = False
    unsynced_exposure: int = 0
    # sync states the journal holds for the card's unconfirmed rides (row id -> state)
    ride_states: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class GateCheck:
    allowed: bool
    reasons: tuple[GateReason, ...]
    same_tap: LastTap | None = None  # set when this is the last tap read again
    card: TransitCard | None = None  # the card with its confirmation brought up to date


def same_tap(policy: GatePolicy, card: TransitCard, gate: str, now: datetime) -> LastTap | None:
    last = card.last
    if last is not None and last.gate == gate and timedelta(0) <= now - last.at <= policy.same_tap:
        return last
    return None


def confirm(card: TransitCard, ride_states: Mapping[str, str] | None) -> TransitCard:
    """The card once the backend's answers on its unconfirmed rides are known: accepted (or a
    duplicate of an accepted one) confirms it."""
    if card.confirmed or not card.unconfirmed or not ride_states:
        return card
    if any(ride_states.get(row) in ("accepted", "duplicate") for row in card.unconfirmed):
        return TransitCard(card.fares, card.last, card.last_go, True, ())
    return card


def check(policy: GatePolicy, card: TransitCard, *, gate: str, station: str, direction: str,
          facts: GateFacts) -> GateCheck:
    """May this tap go through (before its fare is worked out)? `direction` is resolved (entry/exit)."""
    now = facts.now
    repeat = same_tap(policy, card, gate, now)
    if repeat is not None:
        return GateCheck(repeat.approved, (GateReason.SAME_TAP,), repeat, card)
    card = confirm(card, facts.ride_states)
    hard: list[GateReason] = []
    if facts.integrity_problem:
        hard.append(GateReason.JOURNAL_INTEGRITY)
    if facts.deny_listed:
        hard.append(GateReason.DENY_LISTED)
    if facts.card_expired:
        hard.append(GateReason.CARD_EXPIRED)
    if facts.card_declined:
        hard.append(GateReason.CARD_DECLINED)
    if now - facts.last_sync_at > policy.max_sync_age:
        hard.append(GateReason.SYNC_TOO_OLD)
    if policy.exposure_cap is not None and facts.unsynced_exposure > policy.exposure_cap:
        hard.append(GateReason.EXPOSURE_CAP_EXCEEDED)
    if hard:
        return GateCheck(False, tuple(hard), None, card)
    go = card.last_go
    if (go is not None and go.station == station and go.direction == direction
            and timedelta(0) <= now - go.at <= policy.anti_passback):
        return GateCheck(False, (GateReason.ANTI_PASSBACK,), None, card)
    if (direction == "entry" and policy.first_rides_unconfirmed > 0 and not card.confirmed
            and len(card.unconfirmed) >= policy.first_rides_unconfirmed):
        return GateCheck(False, (GateReason.FIRST_RIDE_PENDING,), None, card)
    return GateCheck(True, (), None, card)


def after_tap(card: TransitCard, tap: LastTap, fares: CardState, *, entry: bool) -> TransitCard:
    """The card after a tap was journaled: its last tap, its last tap let through, and an
    unconfirmed ride counted when a card the backend has not confirmed entered."""
    if not tap.approved:
        return TransitCard(card.fares, tap, card.last_go, card.confirmed, card.unconfirmed)
    unconfirmed = card.unconfirmed
    if entry and not card.confirmed:
        unconfirmed = (*unconfirmed, tap.row_id)[-8:]
    return TransitCard(fares, tap, tap, card.confirmed, unconfirmed)


__all__ = ["GateCheck", "GateFacts", "GatePolicy", "GateReason", "LastTap", "Sign", "TransitCard", "after_tap",
           "check", "confirm", "passenger_sign", "same_tap"]
