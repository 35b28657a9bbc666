"""Fares at a transit gate, decided offline and journaled in one write transaction.

`FarePayments.charge_fare` is the gate's counterpart of `Payments.pay`: no operator and no backend,
the card's journey state (authenticated, bound to its newest fare row) read and written in the same
write session as the signed `fare` row, so two gates on one journal can never both charge, or both
pair, the same journey. The pure parts are `terminal.core.fares` (the fare engine) and
`terminal.core.gaterules` (anti-passback, deny list, sync age)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from terminal.core import fares, gaterules
from terminal.core.money import Money
from terminal.errors import CodeAlreadyUsed, JournalIntegrityError, StorageError
from terminal.journal import CodeClaim, Journal, NewTransaction, Session, TxnRow
from terminal.journal.ids import new_txn_id
from terminal.payment import STORAGE_FAILURE, CardFacts, FareResult, FareTap
from terminal.payments import Payments

log = logging.getLogger("walletpos.payments")


class FarePayments:
    """Taps at a transit gate, through the payments' journal, clock and rules state."""

    def __init__(self, payments: Payments) -> None:
        self.payments = payments
        self._fare_zones: dict[str, ZoneInfo] = {}

    def charge_fare(self, tap: FareTap, facts: CardFacts, table: fares.FareTable, policy: gaterules.GatePolicy, *,
                    claim: CodeClaim | None = None, started: float | None = None) -> FareResult:
        """Decide one tap at a transit gate and journal it as a signed `fare` row, in ONE write
        transaction: the card's journey state (authenticated, bound to its newest fare row), the
        deny list, the sync age and the integrity hold are read, the gate rules and the fare engine
        decide, the row is appended and the new journey state stored, so two gates writing to one
        journal (two processes) can never both charge, or both pair, the same journey. The last
        tap read again within the policy's same-tap time is answered `same_tap` and not journaled."""
        t0 = started if started is not None else time.perf_counter()
        journal = self.payments.storage.journal
        token = facts.card_token
        if journal is None or not token:
            return _fare_failure(tap, self.payments.storage.problem or "journal unavailable" if journal is None
                                 else "the card gave no card number", t0)
        zone = self._fare_zone(table)
        txn_id = new_txn_id()
        try:
            with journal.session(now=self.payments.clock()) as session:
                now = self.payments.clock()
                local = now.astimezone(zone).replace(tzinfo=None)
                week = fares.week_of(table, fares.service_day(table, local))
                card = self._transit_card(session, token, week)
                state = self.payments.state_in(session, token, now, backend_reachable=False)
                probe = fares.Tap(txn_id, now, local, tap.station, _direction(tap.direction), tap.concession)
                direction = fares.resolve_direction(table, card.fares, probe)
                facts_now = gaterules.GateFacts(
                    now=now, last_sync_at=state.last_sync_at, deny_listed=state.deny_listed,
                    integrity_problem=state.integrity_problem,
                    card_expired=tap.expiry is not None and state.business_date > tap.expiry,
                    card_declined=tap.card_declined, unsynced_exposure=state.unsynced_exposure.minor,
                    ride_states=self._ride_states(journal, card))
                checked = gaterules.check(policy, card, gate=tap.gate_id, station=tap.station, direction=direction,
                                          facts=facts_now)
                if checked.same_tap is not None:
                    last = checked.same_tap
                    return FareResult("same_tap", last.direction, ("same_tap",),
                                      "go" if last.approved else "tap_only_once", Money(0, self.payments.currency),
                                      Money(card.fares.day_charged, self.payments.currency), None, (),
                                      _fare_total(t0), tap.station, tap.gate_id)
                card = checked.card or card
                base = {"station": tap.station, "gate": tap.gate_id, "gate_direction": tap.direction,
                        "direction": direction, "fare_table": table.label,
                        "service_day": fares.service_day(table, local).isoformat()}
                if tap.concession:
                    base["concession"] = tap.concession
                if not checked.allowed:
                    reasons = tuple(r.value for r in checked.reasons)
                    row = self._fare_row(session, txn_id, tap, facts, token, 0, False, reasons, base, now, None)
                    after = gaterules.after_tap(card, gaterules.LastTap(tap.gate_id, tap.station, direction, now,
                                                                        False, row.id), card.fares, entry=False)
                    self._save_transit(session, token, week, after, row)
                    return self._fare_result("stop", direction, row, (), card.fares.day_charged, tap, t0)
                result = fares.apply_tap(table, card.fares, probe, view="gate")
                breakdown = tuple(c.to_plain() for c in result.charges)
                reasons = _fare_reasons(result, card)
                details = {**base, "fare": {"charged": result.charged, "day_total": result.day_total,
                                            "week_total": result.week_total, "charges": list(breakdown)}}
                row = self._fare_row(session, txn_id, tap, facts, token, result.charged, True, reasons, details, now,
                                     claim)
                after = gaterules.after_tap(card, gaterules.LastTap(tap.gate_id, tap.station, result.direction, now,
                                                                    True, row.id, result.charged),
                                            result.state, entry=result.direction == "entry")
                self._save_transit(session, token, week, after, row)
                return self._fare_result("go", result.direction, row, breakdown, result.day_total, tap, t0)
        except CodeAlreadyUsed:
            try:
                with journal.session(now=self.payments.clock()) as session:
                    now = self.payments.clock()
                    row = self._fare_row(session, txn_id, tap, facts, token, 0, False, ("code_already_used",),
                                         {"station": tap.station, "gate": tap.gate_id,
                                          "gate_direction": tap.direction}, now, None)
                return self._fare_result("stop", _direction(tap.direction), row, (), None, tap, t0)
            except StorageError as exc:
                return _fare_failure(tap, exc.message, t0)
        except StorageError as exc:
            self.payments.storage.last_error = exc.message
            return _fare_failure(tap, exc.message, t0)

    def _fare_zone(self, table: fares.FareTable) -> ZoneInfo:
        zone = self._fare_zones.get(table.timezone)
        if zone is None:
            zone = self._fare_zones[table.timezone] = ZoneInfo(table.timezone)
        return zone

    @staticmethod
    def _ride_states(journal: Journal, card: gaterules.TransitCard) -> dict[str, str] | None:
        """Sync states of the rides a card took before the backend confirmed it (by row id)."""
        if card.confirmed or not card.unconfirmed:
            return None
        out: dict[str, str] = {}
        for row_id in card.unconfirmed:
            row = journal.txns.get(row_id)
            if row is not None:
                out[row_id] = row.sync_state
        return out

    def _transit_card(self, session: Session, token: str, week: date) -> gaterules.TransitCard:
        """The card's authenticated transit state (this week's, else last week's), checked against the
        card's newest fare row: a state that fails its MAC, is missing while the card has fare rows, or
        belongs to an older row (rolled back) puts the journal on hold and the card starts afresh."""
        value: Any = None
        try:
            for name in (_transit_name(week, token), _transit_name(week - timedelta(days=7), token)):
                value = session.guard(name)
                if value is not None:
                    break
        except JournalIntegrityError:
            session.hold("a card's transit journey state does not match its MAC: it was edited outside walletpos")
            return gaterules.TransitCard()
        newest = session.newest_row_of(token, "fare", week - timedelta(days=8))
        if value is None:
            if newest is not None:
                session.hold("a card's transit journey state is missing while its fare rows are there: it was "
                             "deleted outside walletpos")
            return gaterules.TransitCard()
        if newest is None or (newest[0], newest[1]) != (value.get("seq"), value.get("hash")):
            session.hold("a card's transit journey state is not the one its newest fare row left: it was rolled "
                         "back or edited outside walletpos")
            return gaterules.TransitCard()
        try:
            return gaterules.TransitCard.from_plain(value)
        except (KeyError, TypeError, ValueError) as exc:
            session.hold(f"a card's transit journey state is unreadable ({exc})")
            return gaterules.TransitCard()

    @staticmethod
    def _save_transit(session: Session, token: str, week: date, card: gaterules.TransitCard, row: TxnRow) -> None:
        session.set_guard(_transit_name(week, token), {**card.to_plain(), "seq": row.seq, "hash": row.row_hash})

    def _fare_row(self, session: Session, txn_id: str, tap: FareTap, facts: CardFacts, token: str, charged: int,
                  approved: bool, reasons: tuple[str, ...], details: Mapping[str, Any], now: datetime,
                  claim: CodeClaim | None) -> TxnRow:
        record = NewTransaction(
            kind="fare", amount=Money(charged, self.payments.currency), method=tap.method,
            decision="approved" if approved else "declined", reasons=reasons,
            auth_mode="offline" if approved else "none", scheme=facts.scheme, card_token=token,
            masked_pan=facts.masked_pan, sealed_card=facts.sealed_card, details={**facts.details, **details},
            id=txn_id)
        return session.append(record, now=now, business_date=self.payments.business_date(now), claim=claim)

    def _fare_result(self, outcome: str, direction: str, row: TxnRow, breakdown: tuple[Mapping[str, Any], ...],
                     day_total: int | None, tap: FareTap, t0: float) -> FareResult:
        self.payments.storage.last_error = None
        log.info("fare %s seq=%d %s %s %s at %s reasons=%s", row.id, row.seq, outcome, direction, row.amount,
                 tap.station, ",".join(row.reasons))
        return FareResult(outcome, direction, row.reasons, gaterules.passenger_sign(row.reasons, row.approved),
                          row.amount, Money(day_total, self.payments.currency) if day_total is not None else None, row,
                          breakdown, _fare_total(t0), tap.station, tap.gate_id)

    def forget_transit_state(self, before_week: date) -> int:
        """Drop the journey state of weeks before `before_week` (kept two weeks: caps are weekly)."""
        with self.payments.require_journal().session(now=self.payments.clock()) as session:
            return session.forget_guards("transit|", _transit_name(before_week, ""))


def _transit_name(week: date, token: str) -> str:
    return f"transit|{week.isoformat()}|{token}"


def _direction(value: str) -> fares.Direction:
    return "entry" if value == "entry" else "exit" if value == "exit" else "both"


def _fare_total(t0: float) -> dict[str, float]:
    return {"total": (time.perf_counter() - t0) * 1000}


def _fare_reasons(result: fares.TapResult, card: gaterules.TransitCard) -> tuple[str, ...]:
    reasons: list[str] = []
    if any(c.deferred for c in result.charges):
        reasons.append(gaterules.GateReason.PRICED_BY_BACK_OFFICE.value)
    priced = [c for c in result.charges if not c.deferred]
    if result.direction == "entry" and not any(c.kind == "flat" for c in priced):
        reasons.append(gaterules.GateReason.JOURNEY_STARTED.value)
    if any(c.capped for c in priced):
        reasons.append(gaterules.GateReason.CAP_REACHED.value)
    elif priced:
        reasons.append(gaterules.GateReason.FARE_CHARGED.value)
    if any(c.transfer for c in priced) or (result.state.open is not None and result.state.open.transfer):
        reasons.append(gaterules.GateReason.TRANSFER.value)
    if result.direction == "entry" and not card.confirmed and not card.unconfirmed:
        reasons.append(gaterules.GateReason.FIRST_RIDE.value)
    return tuple(reasons)


def _fare_failure(tap: FareTap, problem: str, t0: float) -> FareResult:
    log.error("tap refused, cannot record: %s", problem)
    return FareResult("storage", _direction(tap.direction), (STORAGE_FAILURE,), "see_staff", None, None, None, (),
                      _fare_total(t0), tap.station, tap.gate_id)


__all__ = ["FarePayments"]
