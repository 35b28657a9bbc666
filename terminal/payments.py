"""The one payment path: rules, the backend when the rules say so, the journal.

`Payments.pay` takes a snapshot of the terminal state, lets the pure rules decide, asks the backend
when the rules say so (with the offline answer already decided), then makes the outcome durable in
the journal *before* returning it. If the journal cannot record, the payment is declined (fail
closed). Cards (`terminal.cardpay`), scanned codes and merchant codes (`terminal.codepay`), the
checkout and the back office all pay through here; the service only wires it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from terminal.config import Config
from terminal.core import fares, gaterules, rules
from terminal.core.money import Currency, Money
from terminal.core.rules import Decision, PaymentRequest, RuleOutcome, RuleSet, TerminalState
from terminal.errors import CodeAlreadyUsed, JournalIntegrityError, StorageError, WalletposError
from terminal.journal import CodeClaim, Journal, NewTransaction, Session, TxnRow, parse_utc
from terminal.journal.ids import new_txn_id
from terminal.messages import outcome_message, payment_message
from terminal.payment import (
    STORAGE_FAILURE,
    CardFacts,
    Clock,
    FareResult,
    FareTap,
    OnlineAnswer,
    OnlineAuthorizer,
    PaymentResult,
)
from terminal.security import TerminalKeys

log = logging.getLogger("walletpos.payments")

ARCHIVE_EVERY = timedelta(hours=1)  # retention runs at most this often, from housekeeping...
ARCHIVE_ROWS_PER_RUN = 20_000  # ...and moves at most this many rows a run (in short write sessions)

NO_FACTS = CardFacts()  # a payment with nothing known about the payer beyond the request


class RuleBook:
    """The rules in force: the local config's, tightened by the backend's limits (the sync worker
    calls `tighten` when new limits arrive; a decision reads `current`)."""

    def __init__(self, local: RuleSet) -> None:
        self.local = local
        self.current = local

    def use(self, rule_set: RuleSet) -> None:
        self.current = rule_set


@dataclass
class Storage:
    """The journal and the keys, or why they could not be opened (then every payment is declined)."""

    keys: TerminalKeys | None
    journal: Journal | None
    problem: str | None = None  # the journal could not be opened at start
    last_error: str | None = None  # the last append failed (cleared by the next success)

    def require_journal(self) -> Journal:
        if self.journal is None:
            raise StorageError(self.problem or "the journal is not open", title="Cannot record")
        return self.journal

    def require_keys(self) -> TerminalKeys:
        if self.keys is None:
            raise StorageError(self.problem or "the terminal keys are not available", title="Cannot record")
        return self.keys


class Payments:
    """Decides and records payments. Holds what every payment flow needs: config, clock, storage,
    the rules in force, the backend's online authorisation and its card-data sealing key."""

    def __init__(self, config: Config, data_dir: Path, storage: Storage, *, clock: Clock,
                 online: OnlineAuthorizer | None = None,
                 sealing_key: Callable[[], bytes | None] = lambda: None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.storage = storage
        self.clock = clock
        self.online = online
        self.sealing_key = sealing_key
        self.rules = RuleBook(RuleSet.from_config(config))
        self.currency: Currency = config.currency
        self.zone: ZoneInfo = config.terminal.zone
        self._next_archive: datetime | None = None
        self._fare_zones: dict[str, ZoneInfo] = {}

    # -- basics ---------------------------------------------------------------------------------

    @property
    def journal(self) -> Journal | None:
        return self.storage.journal

    @property
    def keys(self) -> TerminalKeys | None:
        return self.storage.keys

    def require_journal(self) -> Journal:
        return self.storage.require_journal()

    def business_date(self, moment: datetime | None = None) -> date:
        return (moment or self.clock()).astimezone(self.zone).date()

    def last_sync_at(self) -> datetime:
        """Last successful sync, or the installation time when the terminal never synced."""
        journal = self.require_journal()
        value = journal.head().last_sync_ok_at
        return parse_utc(value) if value else journal.installed_at

    def housekeeping(self) -> None:
        """Sign the rows written since the last upkeep and verify them into a new signed checkpoint
        (the sync worker, the TUI and the gate loop call this every few seconds). A row that does not
        verify puts the journal on hold (offline approvals off) and is logged."""
        journal = self.storage.journal
        if journal is not None:
            now = self.clock()
            try:
                journal.housekeeping(now)
                if self._next_archive is None or now >= self._next_archive:
                    self._next_archive = now + ARCHIVE_EVERY
                    journal.archive(keep_days=self.config.journal.keep_days, today=self.business_date(now), now=now,
                                    max_rows=ARCHIVE_ROWS_PER_RUN)
            except (StorageError, JournalIntegrityError) as exc:
                log.warning("housekeeping: %s", exc.message)

    def audit(self, event: str, *, actor: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        self.require_journal().audit.record(event, now=self.clock(), actor=actor, details=details)

    # -- rules ----------------------------------------------------------------------------------

    def _state_in(self, session: Session, card_token: str | None, now: datetime, *,
                  backend_reachable: bool | None = None) -> TerminalState:
        """What the rules read, inside a write session (authenticated, checked, atomic with the append)."""
        head = session.head
        day = self.business_date(now)
        totals = session.card_day(card_token, day)
        cur = self.currency
        journal = self.require_journal()
        return TerminalState(
            now=now,
            business_date=day,
            card_offline_amount_today=Money(totals.offline_amount, cur),
            card_offline_count_today=totals.offline_count,
            card_amount_today=Money(totals.amount, cur),
            unsynced_exposure=Money(head.exposure, cur),
            last_sync_at=parse_utc(head.last_sync_ok_at) if head.last_sync_ok_at else journal.installed_at,
            deny_listed=session.denied(card_token),
            backend_reachable=(self.online.reachable() if self.online is not None else False)
            if backend_reachable is None else backend_reachable,
            integrity_problem=session.problem,
        )

    def terminal_state(self, card_token: str | None, now: datetime | None = None) -> TerminalState:
        """What the rules would read now (in a write session of its own, so it sees what a payment would)."""
        now = now or self.clock()
        with self.require_journal().session(now=now) as session:
            return self._state_in(session, card_token, now)

    def explain(self, request: PaymentRequest) -> tuple[RuleOutcome, TerminalState]:
        state = self.terminal_state(request.card_token)
        return rules.decide(request, state, self.rules.current), state

    # -- paying ---------------------------------------------------------------------------------

    def pay(
        self,
        request: PaymentRequest,
        facts: CardFacts = NO_FACTS,
        *,
        kind: str = "sale",
        operator: str | None = None,
        txn_id: str | None = None,
        started: float | None = None,
        claim: CodeClaim | None = None,
        online_extras: Mapping[str, Any] | None = None,
    ) -> PaymentResult:
        """Decide one payment and make its outcome durable before returning it.

        The decision's reads and the append are one write transaction (no other thread or process can
        pass a limit in between). When the rules want the backend, the transaction ends, the backend is
        asked, and a second transaction decides again with what the journal holds then: the backend's
        answer, or without one the offline answer, which can only be as strict or stricter than the one
        decided before asking.

        `claim` marks a single-use wallet code as used in the same transaction as an approval; a
        code already used is declined (`code_already_used`) and the decline is journaled.
        `online_extras` (e.g. a sealed PIN block) go to the backend with the online request only and
        are never journaled."""
        t0 = started if started is not None else time.perf_counter()
        timings: dict[str, float] = {}
        journal = self.storage.journal
        if journal is None:
            return self._storage_failure(self.storage.problem or "journal unavailable", timings, t0)
        ruleset = self.rules.current
        card_token = request.card_token or facts.card_token
        try:
            with journal.session(now=self.clock()) as session:
                now = self.clock()
                state = self._state_in(session, request.card_token, now)
                outcome = rules.decide(request, state, ruleset)
                timings["rules"] = (time.perf_counter() - t0) * 1000
                if outcome.decision is Decision.NEED_CVM:
                    return PaymentResult("need_cvm", "none", tuple(outcome.reasons), outcome_message(outcome), outcome,
                                         None, _total(timings, t0))
                if outcome.decision is not Decision.GO_ONLINE:
                    approved = outcome.decision is Decision.APPROVE_OFFLINE
                    row = self._record(session, request, facts, card_token, kind, operator, txn_id, claim, now,
                                       state.business_date, approved, "offline", tuple(outcome.reasons), {})
                    return self._result(row, outcome, outcome, None, "offline", timings, t0)
        except CodeAlreadyUsed:
            return self._code_used(request, facts, card_token, kind, operator, txn_id, timings, t0)
        except StorageError as exc:
            return self._storage_failure(exc.message, timings, t0)
        # the rules want the backend: ask it outside the journal's write transaction
        txn_id = txn_id or new_txn_id()
        t_online = time.perf_counter()
        answer = self._ask_backend(request, txn_id, facts, online_extras)
        timings["online"] = (time.perf_counter() - t_online) * 1000
        try:
            with journal.session(now=self.clock()) as session:
                now = self.clock()
                fresh = rules.decide(request, self._state_in(session, request.card_token, now, backend_reachable=False),
                                     ruleset)
                details: dict[str, Any] = {}
                if answer is not None:
                    auth_mode, final = "online", outcome
                    approved = answer.approved
                    reasons = tuple(outcome.reasons) + ((answer.reason,) if answer.reason else ())
                    if answer.auth_code:
                        details["auth_code"] = answer.auth_code
                else:
                    auth_mode = "offline_fallback"
                    before = outcome.offline_answer()
                    # the stricter of the answer decided before asking and the one decided now
                    final = fresh if fresh.decision is not Decision.APPROVE_OFFLINE else before
                    approved = final.decision is Decision.APPROVE_OFFLINE
                    reasons = tuple(final.reasons)
                row = self._record(session, request, facts, card_token, kind, operator, txn_id, claim, now,
                                   self.business_date(now), approved, auth_mode, reasons, details)
        except CodeAlreadyUsed:
            return self._code_used(request, facts, card_token, kind, operator, txn_id, timings, t0)
        except StorageError as exc:
            return self._storage_failure(exc.message, timings, t0)
        return self._result(row, outcome, final, answer, auth_mode, timings, t0)

    def _record(self, session: Session, request: PaymentRequest, facts: CardFacts, card_token: str | None,
                kind: str, operator: str | None, txn_id: str | None, claim: CodeClaim | None, now: datetime,
                business_date: date, approved: bool, auth_mode: str, reasons: tuple[str, ...],
                extra: Mapping[str, Any]) -> TxnRow:
        record = NewTransaction(
            kind=kind, amount=request.amount, method=request.method.value,
            decision="approved" if approved else "declined", reasons=reasons, auth_mode=auth_mode,
            scheme=facts.scheme, card_token=card_token, masked_pan=facts.masked_pan, operator=operator,
            sealed_card=facts.sealed_card, details={**facts.details, **extra}, id=txn_id)
        return session.append(record, now=now, business_date=business_date, claim=claim if approved else None)

    def _result(self, row: TxnRow, outcome: RuleOutcome, final: RuleOutcome, answer: OnlineAnswer | None,
                auth_mode: str, timings: dict[str, float], t0: float) -> PaymentResult:
        timings["journal"] = (time.perf_counter() - t0) * 1000 - sum(v for k, v in timings.items() if k != "journal")
        self.storage.last_error = None
        log.info("payment %s seq=%d %s %s %s reasons=%s", row.id, row.seq, row.decision, auth_mode, row.amount,
                 ",".join(row.reasons))
        return PaymentResult(row.decision, auth_mode, row.reasons, _result_message(row.approved, auth_mode, final,
                                                                                    answer),
                             outcome, row, _total(timings, t0))

    def _code_used(self, request: PaymentRequest, facts: CardFacts, card_token: str | None, kind: str,
                   operator: str | None, txn_id: str | None, timings: dict[str, float], t0: float) -> PaymentResult:
        """A single-use wallet code already used: the attempt is journaled as a decline."""
        try:
            with self.require_journal().session(now=self.clock()) as session:
                now = self.clock()
                row = self._record(session, request, facts, card_token, kind, operator, txn_id, None, now,
                                   self.business_date(now), False, "none", ("code_already_used",), {})
        except StorageError as exc:
            return self._storage_failure(exc.message, timings, t0)
        result = self._result(row, RuleOutcome(Decision.DECLINE, ()), RuleOutcome(Decision.DECLINE, ()), None, "none",
                              timings, t0)
        return replace(result, message="Declined: this payment code was already used.")

    def _ask_backend(self, request: PaymentRequest, txn_id: str, facts: CardFacts,
                     extras: Mapping[str, Any] | None = None) -> OnlineAnswer | None:
        assert self.online is not None
        try:
            return self.online.authorize(request, txn_id, {"scheme": facts.scheme, "card_token": facts.card_token,
                                                           "masked_pan": facts.masked_pan,
                                                           "sealed_card": facts.sealed_card,
                                                           **facts.details, **(extras or {})})
        except WalletposError as exc:
            log.warning("online authorisation failed, using the offline answer: %s", exc)
            return None

    def _storage_failure(self, problem: str, timings: dict[str, float], t0: float) -> PaymentResult:
        log.error("payment refused, cannot record: %s", problem)
        self.storage.last_error = problem
        return PaymentResult(
            "declined", "none", (STORAGE_FAILURE,),
            f"Not approved: the terminal cannot record payments ({problem}).",
            None, None, _total(timings, t0),
        )

    # -- transit fares (a gate: no operator, decided offline in one write transaction) ----------------

    def charge_fare(self, tap: FareTap, facts: CardFacts, table: fares.FareTable, policy: gaterules.GatePolicy, *,
                    claim: CodeClaim | None = None, started: float | None = None) -> FareResult:
        """Decide one tap at a transit gate and journal it as a signed `fare` row, in ONE write
        transaction: the card's journey state (authenticated, bound to its newest fare row), the
        deny list, the sync age and the integrity hold are read, the gate rules and the fare engine
        decide, the row is appended and the new journey state stored, so two gates writing to one
        journal (two processes) can never both charge, or both pair, the same journey. The last
        tap read again within the policy's same-tap time is answered `same_tap` and not journaled."""
        t0 = started if started is not None else time.perf_counter()
        journal = self.storage.journal
        token = facts.card_token
        if journal is None or not token:
            return _fare_failure(tap, self.storage.problem or "journal unavailable" if journal is None
                                 else "the card gave no card number", t0)
        zone = self._fare_zone(table)
        txn_id = new_txn_id()
        try:
            with journal.session(now=self.clock()) as session:
                now = self.clock()
                local = now.astimezone(zone).replace(tzinfo=None)
                week = fares.week_of(table, fares.service_day(table, local))
                card = self._transit_card(session, token, week)
                state = self._state_in(session, token, now, backend_reachable=False)
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
                                      "go" if last.approved else "tap_only_once", Money(0, self.currency),
                                      Money(card.fares.day_charged, self.currency), None, (),
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
                with journal.session(now=self.clock()) as session:
                    now = self.clock()
                    row = self._fare_row(session, txn_id, tap, facts, token, 0, False, ("code_already_used",),
                                         {"station": tap.station, "gate": tap.gate_id,
                                          "gate_direction": tap.direction}, now, None)
                return self._fare_result("stop", _direction(tap.direction), row, (), None, tap, t0)
            except StorageError as exc:
                return _fare_failure(tap, exc.message, t0)
        except StorageError as exc:
            self.storage.last_error = exc.message
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
            kind="fare", amount=Money(charged, self.currency), method=tap.method,
            decision="approved" if approved else "declined", reasons=reasons,
            auth_mode="offline" if approved else "none", scheme=facts.scheme, card_token=token,
            masked_pan=facts.masked_pan, sealed_card=facts.sealed_card, details={**facts.details, **details},
            id=txn_id)
        return session.append(record, now=now, business_date=self.business_date(now), claim=claim)

    def _fare_result(self, outcome: str, direction: str, row: TxnRow, breakdown: tuple[Mapping[str, Any], ...],
                     day_total: int | None, tap: FareTap, t0: float) -> FareResult:
        self.storage.last_error = None
        log.info("fare %s seq=%d %s %s %s at %s reasons=%s", row.id, row.seq, outcome, direction, row.amount,
                 tap.station, ",".join(row.reasons))
        return FareResult(outcome, direction, row.reasons, gaterules.passenger_sign(row.reasons, row.approved),
                          row.amount, Money(day_total, self.currency) if day_total is not None else None, row,
                          breakdown, _fare_total(t0), tap.station, tap.gate_id)

    def forget_transit_state(self, before_week: date) -> int:
        """Drop the journey state of weeks before `before_week` (kept two weeks: caps are weekly)."""
        with self.require_journal().session(now=self.clock()) as session:
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


def _total(timings: dict[str, float], t0: float) -> dict[str, float]:
    timings["total"] = (time.perf_counter() - t0) * 1000
    return timings


def _result_message(approved: bool, auth_mode: str, final: RuleOutcome, answer: OnlineAnswer | None) -> str:
    return payment_message(approved, auth_mode, final.reasons, backend_answered=answer is not None,
                           backend_reason=answer.reason if answer is not None else None)
