"""The one payment path: rules, the backend when the rules say so, the journal.

`Payments.pay` takes a snapshot of the terminal state, lets the pure rules decide, asks the backend
when the rules say so (with the offline answer already decided), then makes the outcome durable in
the journal *before* returning it. If the journal cannot record, the payment is declined (fail
closed). Cards (`terminal.cardpay`), scanned codes and merchant codes (`terminal.codepay`), the
checkout and the back office all pay through here; fares at a gate (`terminal.farepay`) read the
same terminal state (`state_in`) in their own write transaction; the service only wires it.
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
from terminal.core import rules
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

    def state_in(self, session: Session, card_token: str | None, now: datetime, *,
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
            return self.state_in(session, card_token, now)

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
                state = self.state_in(session, request.card_token, now)
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
                fresh = rules.decide(request, self.state_in(session, request.card_token, now, backend_reachable=False),
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


def _total(timings: dict[str, float], t0: float) -> dict[str, float]:
    timings["total"] = (time.perf_counter() - t0) * 1000
    return timings


def _result_message(approved: bool, auth_mode: str, final: RuleOutcome, answer: OnlineAnswer | None) -> str:
    return payment_message(approved, auth_mode, final.reasons, backend_answered=answer is not None,
                           backend_reason=answer.reason if answer is not None else None)
