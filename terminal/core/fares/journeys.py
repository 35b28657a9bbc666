"""Taps and journeys, pure: a card's `CardState` folded one tap at a time (`apply_tap`, what a gate
does), and all of a card's taps of a day priced across gates and stations (`price_card`, the back
office). See `terminal.core.fares` for the fare rules as a whole."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal

from terminal.core.fares.table import (
    ChargeKind,
    Direction,
    FareTable,
    View,
    _percent,
    base_fare,
    caps_for,
    concession_of,
    is_peak,
    service_day,
    week_of,
)

# ------------------------------------------------------------------------------------------------
# taps and journeys


@dataclass(frozen=True, slots=True)
class Tap:
    """One accepted tap at a gate: `at` is UTC (timezone-aware), `local` the same moment as naive
    local wall time in the table's time zone (the caller converts)."""

    id: str
    at: datetime
    local: datetime
    station: str
    direction: Direction
    concession: str | None = None


@dataclass(frozen=True, slots=True)
class OpenJourney:
    tap_id: str
    at: datetime
    local: datetime
    station: str
    day: date
    transfer: bool = False
    concession: str | None = None


@dataclass(frozen=True, slots=True)
class CardState:
    """What the fare engine remembers of one card between taps."""

    open: OpenJourney | None = None
    chain_end_at: datetime | None = None  # end of the previous journey (transfers are counted from it)
    chain_end_station: str | None = None
    chain_transfers: int = 0
    day: date | None = None
    day_charged: int = 0
    week: date | None = None
    week_charged: int = 0

    def to_plain(self) -> dict[str, Any]:
        """JSON-ready values (for authenticated storage); `from_plain` reads them back."""
        o = self.open
        return {
            "open": None if o is None else {"tap_id": o.tap_id, "at": _iso(o.at), "local": _iso(o.local),
                                            "station": o.station, "day": o.day.isoformat(),
                                            "transfer": o.transfer, "concession": o.concession},
            "chain_end_at": _iso(self.chain_end_at) if self.chain_end_at else None,
            "chain_end_station": self.chain_end_station, "chain_transfers": self.chain_transfers,
            "day": self.day.isoformat() if self.day else None, "day_charged": self.day_charged,
            "week": self.week.isoformat() if self.week else None, "week_charged": self.week_charged,
        }

    @classmethod
    def from_plain(cls, value: Mapping[str, Any]) -> CardState:
        o = value.get("open")
        return cls(
            open=None if not o else OpenJourney(o["tap_id"], datetime.fromisoformat(o["at"]),
                                                datetime.fromisoformat(o["local"]), o["station"],
                                                date.fromisoformat(o["day"]), bool(o["transfer"]), o.get("concession")),
            chain_end_at=datetime.fromisoformat(value["chain_end_at"]) if value.get("chain_end_at") else None,
            chain_end_station=value.get("chain_end_station"), chain_transfers=int(value.get("chain_transfers", 0)),
            day=date.fromisoformat(value["day"]) if value.get("day") else None,
            day_charged=int(value.get("day_charged", 0)),
            week=date.fromisoformat(value["week"]) if value.get("week") else None,
            week_charged=int(value.get("week_charged", 0)),
        )


def _iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass(frozen=True, slots=True)
class Charge:
    """One priced journey (or incomplete journey) and what was charged for it."""

    kind: ChargeKind
    tap_id: str  # the tap the journey is known by: its tap-in, or the tap-out of a journey without one
    day: date  # the service day it counts towards
    fare: int  # after peak/off-peak, transfer and concession, before capping
    charged: int  # after capping (0 when deferred)
    origin: str | None = None
    destination: str | None = None
    ended_by: str | None = None  # the tap that ended or settled it
    peak: bool = False
    transfer: bool = False
    capped: Literal["daily", "weekly"] | None = None
    deferred: bool = False  # gate view: an incomplete journey left to the back office

    def to_plain(self) -> dict[str, Any]:
        return {"kind": self.kind, "tap_id": self.tap_id, "day": self.day.isoformat(), "fare": self.fare,
                "charged": self.charged, "from": self.origin, "to": self.destination, "ended_by": self.ended_by,
                "peak": self.peak, "transfer": self.transfer, "capped": self.capped, "deferred": self.deferred}


@dataclass(frozen=True, slots=True)
class TapResult:
    direction: Literal["entry", "exit"]
    charges: tuple[Charge, ...]
    state: CardState

    @property
    def charged(self) -> int:
        """What this tap charged (a settled incomplete journey included)."""
        return sum(c.charged for c in self.charges)

    @property
    def day_total(self) -> int:
        return self.state.day_charged

    @property
    def week_total(self) -> int:
        return self.state.week_charged


def _roll(table: FareTable, state: CardState, day: date) -> CardState:
    week = week_of(table, day)
    if state.day == day and state.week == week:
        return state
    return replace(state, day=day, day_charged=state.day_charged if state.day == day else 0,
                   week=week, week_charged=state.week_charged if state.week == week else 0)


def _capped(table: FareTable, state: CardState, fare: int, concession: str | None
            ) -> tuple[int, Literal["daily", "weekly"] | None, CardState]:
    """min(fare, daily cap - charged today, weekly cap - charged this week), never below 0."""
    daily, weekly = caps_for(table, concession)
    charged = fare
    capped: Literal["daily", "weekly"] | None = None
    if daily is not None and charged > max(0, daily - state.day_charged):
        charged, capped = max(0, daily - state.day_charged), "daily"
    if weekly is not None and charged > max(0, weekly - state.week_charged):
        charged, capped = max(0, weekly - state.week_charged), "weekly"
    return charged, capped, replace(state, day_charged=state.day_charged + charged,
                                    week_charged=state.week_charged + charged)


def _adjusted(table: FareTable, fare: int, local: datetime, concession: str | None, transfer: bool) -> int:
    if table.peak and not is_peak(table, local):
        fare = _percent(fare, table.off_peak_percent)
    if transfer:
        fare -= _percent(fare, table.transfer_percent_off)
    c = concession_of(table, concession)
    if c is not None:
        fare = _percent(fare, c.percent)
    return fare


def _settle_incomplete(table: FareTable, state: CardState, open_: OpenJourney, ended_by: str, view: View
                       ) -> tuple[Charge, CardState]:
    """An open journey that will not be ended by a tap-out: the maximum fare (network view), or left
    to the back office (gate view). Counted towards the journey's own day."""
    state = replace(state, open=None, chain_end_at=None, chain_end_station=None, chain_transfers=0)
    fare = _adjusted(table, table.max_fare, open_.local, open_.concession, False)
    if view == "gate":
        return Charge("incomplete_no_exit", open_.tap_id, open_.day, fare, 0, open_.station, None, ended_by,
                      deferred=True), state
    if state.day == open_.day:  # always so from apply_tap: the journey's tap-in set the day
        charged, capped, after = _capped(table, state, fare, open_.concession)
    else:
        charged, capped, _ = _capped(table, replace(state, day_charged=0), fare, open_.concession)
        after = replace(state, week_charged=state.week_charged + charged)
    return Charge("incomplete_no_exit", open_.tap_id, open_.day, fare, charged, open_.station, None, ended_by,
                  capped=capped), after


def _expired(table: FareTable, open_: OpenJourney, at: datetime, day: date) -> bool:
    return day != open_.day or at - open_.at > timedelta(minutes=table.max_journey_minutes)


def resolve_direction(table: FareTable, state: CardState, tap: Tap) -> Literal["entry", "exit"]:
    """A tap at a two-way gate is a tap-out when the card has a journey open here, else a tap-in."""
    if tap.direction != "both":
        return tap.direction
    if table.tap_out and state.open is not None and not _expired(table, state.open, tap.at,
                                                                  service_day(table, tap.local)):
        return "exit"
    return "entry"


def apply_tap(table: FareTable, state: CardState, tap: Tap, *, view: View = "network") -> TapResult:
    """Fold one accepted tap into a card's state: what it charges and the state after it."""
    day = service_day(table, tap.local)
    direction = resolve_direction(table, state, tap)
    charges: list[Charge] = []
    if state.open is not None and _expired(table, state.open, tap.at, day):
        charge, state = _settle_incomplete(table, state, state.open, tap.id, view)
        charges.append(charge)
    state = _roll(table, state, day)
    if direction == "entry":
        if state.open is not None:  # a second tap-in: the journey before it was never ended
            charge, state = _settle_incomplete(table, state, state.open, tap.id, view)
            charges.append(charge)
        transfer = (state.chain_end_at is not None and state.chain_end_station != tap.station
                    and tap.at - state.chain_end_at <= timedelta(minutes=table.transfer_minutes)
                    and state.chain_transfers < table.max_transfers and table.transfer_minutes > 0)
        if not table.tap_out:
            fare = _adjusted(table, table.flat_fare, tap.local, tap.concession, transfer)
            charged, capped, state = _capped(table, state, fare, tap.concession)
            charges.append(Charge("flat", tap.id, day, fare, charged, tap.station, None, tap.id,
                                  is_peak(table, tap.local), transfer, capped))
            state = replace(state, chain_end_at=tap.at, chain_end_station=tap.station,
                            chain_transfers=state.chain_transfers + 1 if transfer else 0)
        else:
            state = replace(state, open=OpenJourney(tap.id, tap.at, tap.local, tap.station, day, transfer,
                                                    tap.concession))
        return TapResult("entry", tuple(charges), state)
    if not table.tap_out:  # a tap-out where fares are paid at the tap-in: nothing to charge
        return TapResult("exit", tuple(charges), state)
    open_ = state.open
    if open_ is None:  # a tap-out without a tap-in
        fare = _adjusted(table, table.max_fare, tap.local, tap.concession, False)
        state = replace(state, chain_end_at=None, chain_end_station=None, chain_transfers=0)
        if view == "gate":
            charges.append(Charge("incomplete_no_entry", tap.id, day, fare, 0, None, tap.station, tap.id,
                                  deferred=True))
        else:
            charged, capped, state = _capped(table, state, fare, tap.concession)
            charges.append(Charge("incomplete_no_entry", tap.id, day, fare, charged, None, tap.station, tap.id,
                                  capped=capped))
        return TapResult("exit", tuple(charges), state)
    fare = _adjusted(table, base_fare(table, open_.station, tap.station), open_.local, open_.concession,
                     open_.transfer)
    charged, capped, state = _capped(table, replace(state, open=None), fare, open_.concession)
    charges.append(Charge("journey", open_.tap_id, open_.day, fare, charged, open_.station, tap.station, tap.id,
                          is_peak(table, open_.local), open_.transfer, capped))
    state = replace(state, chain_end_at=tap.at, chain_end_station=tap.station,
                    chain_transfers=state.chain_transfers + 1 if open_.transfer else 0)
    return TapResult("exit", tuple(charges), state)


def close_open(table: FareTable, state: CardState, *, now: datetime, now_local: datetime,
               view: View = "network") -> tuple[Charge | None, CardState]:
    """Settle a journey left open once it can no longer be ended: its maximum journey time has
    passed, or its service day is over. (None, state) while it may still end."""
    open_ = state.open
    if open_ is None or not _expired(table, open_, now, service_day(table, now_local)):
        return None, state
    return _settle_incomplete(table, state, open_, "", view)


# ------------------------------------------------------------------------------------------------
# the back office: all of a card's taps


@dataclass(frozen=True, slots=True)
class DayCharge:
    day: date
    charges: tuple[Charge, ...]

    @property
    def total(self) -> int:
        return sum(c.charged for c in self.charges)


@dataclass(frozen=True, slots=True)
class PricedCard:
    days: tuple[DayCharge, ...]
    state: CardState
    in_progress: OpenJourney | None  # a journey that may still be ended by a tap-out

    def day(self, day: date) -> DayCharge:
        return next((d for d in self.days if d.day == day), DayCharge(day, ()))

    @property
    def total(self) -> int:
        return sum(d.total for d in self.days)


def price_card(table: FareTable, taps: Iterable[Tap], *, now: datetime, now_local: datetime,
               view: View = "network") -> PricedCard:
    """Every tap of one card, in time order (a tap id seen twice counts once), priced as one fold,
    then a journey left open settled when it can no longer end by `now`. Taps at the same instant
    are taken in the order of their ids (the terminal's ids are time-ordered)."""
    seen: set[str] = set()
    ordered = sorted(taps, key=lambda t: (t.at, t.id))
    state = CardState()
    charges: list[Charge] = []
    for tap in ordered:
        if tap.id in seen:
            continue
        seen.add(tap.id)
        result = apply_tap(table, state, tap, view=view)
        charges.extend(result.charges)
        state = result.state
    closing, state = close_open(table, state, now=now, now_local=now_local, view=view)
    if closing is not None:
        charges.append(closing)
    by_day: dict[date, list[Charge]] = {}
    for charge in charges:
        by_day.setdefault(charge.day, []).append(charge)
    days = tuple(DayCharge(d, tuple(by_day[d])) for d in sorted(by_day))
    return PricedCard(days, state, state.open)
