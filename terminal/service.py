"""The one place that wires walletpos together: config, keys, journal, rules (and, as they arrive,
the sync worker and the drivers). The TUI, the CLI, the gate loop and the tests all use a
`Service` built by `build_service`; none of them wires things itself.

Payments follow one path (`pay`): take a snapshot of the terminal state, let the pure rules decide,
ask the backend when the rules say so (with the offline answer already decided), then make the
outcome durable in the journal *before* returning it. If the journal cannot record, the payment is
declined (fail closed).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import platformdirs

from terminal import __version__, backoffice, messages, receipts
from terminal.config import Config, load_config
from terminal.core import rules
from terminal.core.money import Money
from terminal.core.reports import DayReport
from terminal.core.rules import Decision, Method, PaymentRequest, RuleOutcome, RuleSet, TerminalState
from terminal.errors import CodeAlreadyUsed, StorageError, WalletposError
from terminal.journal import CodeClaim, Journal, NewTransaction, TxnRow, VerifyReport, new_txn_id, parse_utc, utc_text
from terminal.logs import setup_logging
from terminal.operators import Operators, PinCheck
from terminal.security import TerminalKeys, ensure_private_dir, load_or_create_keys
from terminal.sync import Enrolment, PaymentStatus, SyncReport, SyncStatus, SyncWorker, attach_backend, disabled_status

log = logging.getLogger("walletpos.service")

JOURNAL_FILE = "journal.sqlite3"
STORAGE_FAILURE = "storage_failure"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Path:
    """--data-dir, else $WALLETPOS_DATA_DIR, else the platform's user data directory."""
    env = os.environ if env is None else env
    if data_dir:
        return Path(data_dir).expanduser()
    if env.get("WALLETPOS_DATA_DIR"):
        return Path(env["WALLETPOS_DATA_DIR"]).expanduser()
    return Path(platformdirs.user_data_dir("walletpos", appauthor=False))


@dataclass(frozen=True, slots=True)
class OnlineAnswer:
    approved: bool
    reason: str | None = None
    auth_code: str | None = None


class OnlineAuthorizer(Protocol):
    """The backend, as the payment flow sees it (implemented by the sync client)."""

    def reachable(self) -> bool:
        """Cheap, no IO: may the checkout try the backend now (circuit closed)?"""

    def authorize(self, request: PaymentRequest, txn_id: str, facts: Mapping[str, Any]) -> OnlineAnswer | None:
        """Ask the backend within its deadline; None on timeout, error or an unreadable answer."""


@dataclass(frozen=True, slots=True)
class CardFacts:
    """What the payment flow records about who pays (never a clear card number)."""

    scheme: str | None = None
    card_token: str | None = None
    masked_pan: str | None = None
    sealed_card: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PaymentResult:
    outcome: str  # approved | declined | need_cvm
    auth_mode: str  # offline | online | offline_fallback | none
    reasons: tuple[str, ...]
    message: str
    rules: RuleOutcome | None
    row: TxnRow | None
    timings_ms: Mapping[str, float]

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "approved": self.approved,
            "auth_mode": self.auth_mode,
            "reasons": list(self.reasons),
            "message": self.message,
            "transaction_id": self.row.id if self.row else None,
            "seq": self.row.seq if self.row else None,
            "amount": self.row.amount.minor if self.row else None,
            "masked_pan": self.row.masked_pan if self.row else None,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }


class Service:
    def __init__(
        self,
        config: Config,
        data_dir: Path,
        *,
        clock: Clock = utc_now,
        configure_logging: bool = False,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.clock = clock
        self.rule_set = RuleSet.from_config(config)
        self._zone = config.terminal.zone
        self._card_aids: tuple[Any, ...] | None = None
        self.currency = config.currency
        self.online: OnlineAuthorizer | None = None
        self.checkout: Any = None  # terminal.checkout.Checkout once devices are attached
        self.keys: TerminalKeys | None = None
        self.journal: Journal | None = None
        self.storage_problem: str | None = None  # the journal could not be opened at start
        self.last_storage_error: str | None = None  # the last append failed (cleared by the next success)
        self.backend: Any = None  # terminal.backend.BackendClient when [backend] enabled
        self.sync: SyncWorker | None = None
        self._codes_on_screen: set[str] = set()  # merchant-code references a screen is watching
        self._codes_lock = threading.Lock()
        try:
            ensure_private_dir(data_dir)
            if configure_logging:
                setup_logging(data_dir / "logs", config.log.level, config.log.keep_files)
            self.keys = load_or_create_keys(data_dir)
            self.journal = Journal(data_dir / JOURNAL_FILE, self.keys, config.terminal.id, now=clock())
        except StorageError as exc:
            self.storage_problem = exc.message
            log.error("storage unavailable, approvals disabled: %s", exc.message)
        if config.backend.enabled and self.journal is not None:
            attach_backend(self)  # backend client, online authorisation, sync worker (terminal/sync.py)

    # -- basics ---------------------------------------------------------------------------------

    def close(self) -> None:
        if self.checkout is not None:
            self.checkout.close()
        if self.sync is not None:
            self.sync.close()
        if self.journal is not None:
            self.journal.close()

    def device_states(self) -> tuple[str, str]:
        """(reader state, camera state) for status bars: ready, card_present, absent, error, none."""
        return self.checkout.device_states() if self.checkout is not None else ("none", "none")

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def business_date(self, moment: datetime | None = None) -> date:
        return (moment or self.clock()).astimezone(self.config.terminal.zone).date()

    def require_journal(self) -> Journal:
        if self.journal is None:
            raise StorageError(self.storage_problem or "the journal is not open", title="Cannot record")
        return self.journal

    def last_sync_at(self) -> datetime:
        """Last successful sync, or the installation time when the terminal never synced."""
        journal = self.require_journal()
        value = journal.meta("last_sync_ok_at")
        return parse_utc(value) if value else journal.installed_at

    # -- rules ----------------------------------------------------------------------------------

    def terminal_state(self, card_token: str | None, now: datetime | None = None) -> TerminalState:
        journal = self.require_journal()
        now = now or self.clock()
        day = self.business_date(now)
        totals = journal.payer_totals(card_token, day)
        cur = self.currency
        return TerminalState(
            now=now,
            business_date=day,
            card_offline_amount_today=Money(totals.offline_amount_today, cur),
            card_offline_count_today=totals.offline_count_today,
            card_amount_today=Money(totals.amount_today, cur),
            unsynced_exposure=journal.unsynced_exposure(cur),
            last_sync_at=self.last_sync_at(),
            deny_listed=journal.is_denied(card_token),
            backend_reachable=self.online.reachable() if self.online is not None else False,
        )

    def explain(self, request: PaymentRequest) -> tuple[RuleOutcome, TerminalState]:
        state = self.terminal_state(request.card_token)
        return rules.decide(request, state, self.rule_set), state

    # -- payments -------------------------------------------------------------------------------

    def pay(
        self,
        request: PaymentRequest,
        facts: CardFacts = CardFacts(),
        *,
        kind: str = "sale",
        operator: str | None = None,
        txn_id: str | None = None,
        started: float | None = None,
        claim: CodeClaim | None = None,
        online_extras: Mapping[str, Any] | None = None,
    ) -> PaymentResult:
        """Decide one payment and make its outcome durable before returning it.

        `claim` marks a single-use wallet code as used in the same transaction as an approval; a
        code already used is declined (`code_already_used`) and the decline is journaled.
        `online_extras` (e.g. a sealed PIN block) go to the backend with the online request only and
        are never journaled."""
        t0 = started if started is not None else time.perf_counter()
        timings: dict[str, float] = {}
        if self.journal is None:
            return self._storage_failure(self.storage_problem or "journal unavailable", timings, t0)
        try:
            state = self.terminal_state(request.card_token)
        except StorageError as exc:
            return self._storage_failure(exc.message, timings, t0)
        outcome = rules.decide(request, state, self.rule_set)
        timings["rules"] = (time.perf_counter() - t0) * 1000
        if outcome.decision is Decision.NEED_CVM:
            return PaymentResult("need_cvm", "none", tuple(outcome.reasons), outcome.message, outcome, None,
                                 self._total(timings, t0))
        auth_mode = "offline"
        final: RuleOutcome = outcome
        reasons: tuple[str, ...] = tuple(outcome.reasons)
        answer: OnlineAnswer | None = None
        if outcome.decision is Decision.GO_ONLINE:
            txn_id = txn_id or new_txn_id()
            t_online = time.perf_counter()
            answer = self._ask_backend(request, txn_id, facts, online_extras)
            timings["online"] = (time.perf_counter() - t_online) * 1000
            if answer is None:
                final = outcome.offline_answer()
                auth_mode = "offline_fallback"
                reasons = tuple(final.reasons)
            else:
                auth_mode = "online"
                reasons = tuple(outcome.reasons) + ((answer.reason,) if answer.reason else ())
        approved = answer.approved if answer is not None else final.decision is Decision.APPROVE_OFFLINE
        details = dict(facts.details)
        if answer is not None and answer.auth_code:
            details["auth_code"] = answer.auth_code
        record = NewTransaction(
            kind=kind, amount=request.amount, method=request.method.value,
            decision="approved" if approved else "declined", reasons=reasons, auth_mode=auth_mode,
            scheme=facts.scheme, card_token=request.card_token or facts.card_token,
            masked_pan=facts.masked_pan, operator=operator, sealed_card=facts.sealed_card,
            details=details, id=txn_id,
        )
        t_journal = time.perf_counter()
        try:
            try:
                row = self.journal.append(record, now=self.clock(), business_date=state.business_date,
                                          claim=claim if approved else None)
            except CodeAlreadyUsed:
                approved, auth_mode, reasons = False, "none", ("code_already_used",)
                final = RuleOutcome(Decision.DECLINE, ())
                answer = None
                record = replace(record, decision="declined", reasons=reasons, auth_mode=auth_mode)
                row = self.journal.append(record, now=self.clock(), business_date=state.business_date)
        except StorageError as exc:
            return self._storage_failure(exc.message, timings, t0)
        timings["journal"] = (time.perf_counter() - t_journal) * 1000
        self.last_storage_error = None
        message = _result_message(approved, auth_mode, final, answer) if reasons != ("code_already_used",) \
            else "Declined: this payment code was already used."
        log.info("payment %s seq=%d %s %s %s reasons=%s", row.id, row.seq, row.decision, auth_mode,
                 request.amount, ",".join(reasons))
        return PaymentResult(row.decision, auth_mode, reasons, message, outcome, row, self._total(timings, t0))

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

    @staticmethod
    def _total(timings: dict[str, float], t0: float) -> dict[str, float]:
        timings["total"] = (time.perf_counter() - t0) * 1000
        return timings

    def _storage_failure(self, problem: str, timings: dict[str, float], t0: float) -> PaymentResult:
        log.error("payment refused, cannot record: %s", problem)
        self.last_storage_error = problem
        return PaymentResult(
            "declined", "none", (STORAGE_FAILURE,),
            f"Not approved: the terminal cannot record payments ({problem}).",
            None, None, self._total(timings, t0),
        )

    # -- back office: operators, refunds, voids, day close, receipts (operators.py, backoffice.py) --

    @property
    def operators(self) -> Operators:
        policy = self.config.operators
        return Operators(self.require_journal(), max_failed_pins=policy.max_failed_pins,
                         lockout=timedelta(minutes=policy.lockout_minutes))

    def sign_in(self, operator_id: str, pin: str) -> PinCheck:
        return self.operators.check(operator_id, pin, now=self.clock())

    def refund(self, reference: str, amount: Money | None, *, operator: str | None, supervisor_id: str | None,
               supervisor_pin: str | None) -> backoffice.BackOfficeResult:
        return backoffice.refund(self, reference, amount, operator=operator, supervisor_id=supervisor_id,
                                 supervisor_pin=supervisor_pin)

    def void_last(self, *, operator: str | None, supervisor_id: str | None,
                  supervisor_pin: str | None) -> backoffice.BackOfficeResult:
        return backoffice.void_last(self, operator=operator, supervisor_id=supervisor_id,
                                    supervisor_pin=supervisor_pin)

    def day_report(self) -> DayReport:
        return backoffice.day_report(self)

    def close_day(self, *, operator: str | None) -> tuple[DayReport, list[Path]]:
        return backoffice.close_day(self, operator=operator)

    def receipt_lines(self, row: TxnRow, locale: str | None = None) -> list[str]:
        return receipts.receipt_lines(row, self.config, locale)

    def save_receipt(self, row: TxnRow) -> Path:
        return backoffice.save_receipt(self, row)

    # -- reports --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": __version__,
            "terminal_id": self.config.terminal.id,
            "mode": self.config.terminal.mode,
            "config_file": self.config.source,
            "data_dir": str(self.data_dir),
            "currency": self.currency.alpha,
            "storage": {"ok": self.journal is not None, "problem": self.storage_problem},
        }
        if self.journal is None:
            out["approvals"] = "disabled: the journal cannot record"
            return out
        journal = self.journal
        queue = journal.queue_summary()
        exposure = journal.unsynced_exposure(self.currency)
        out.update(
            journal={"path": str(journal.path), **journal.counts()},
            unsynced_exposure={"amount": exposure.minor, "text": str(exposure),
                               "cap": self.rule_set.exposure_cap.minor},
            queue={"pending": queue["pending"], "oldest_pending_at": queue["oldest_pending_at"]},
            last_sync_at=journal.meta("last_sync_ok_at"),
            deny_list={"version": journal.deny_list_version(), "entries": journal.deny_list_size()},
            merchant_codes_open=len(journal.open_merchant_codes()),
            approvals="enabled",
        )
        return out

    def device_report(self) -> dict[str, dict[str, str]]:
        """Reader and camera as their watchers see them: configured device, state and last detail."""
        out: dict[str, dict[str, str]] = {}
        checkout = self.checkout
        for kind, configured in (("reader", self.config.reader.device), ("camera", self.config.camera.source)):
            watcher = getattr(checkout, "reader" if kind == "reader" else "scanner", None) if checkout else None
            if watcher is None:
                out[kind] = {"configured": configured, "state": "not attached", "name": "", "detail": ""}
                continue
            status = watcher.status
            out[kind] = {"configured": configured, "state": status.state, "name": status.name,
                         "detail": status.detail}
        return out

    def diagnostics(self) -> list[str]:
        """What a technician checks first, one line each: devices, backend link, queue."""
        lines: list[str] = []
        for kind, dev in self.device_report().items():
            detail = f" - {dev['detail']}" if dev["detail"] else ""
            lines.append(f"{kind:<9} {dev['state']}  ({dev['configured']}{', ' + dev['name'] if dev['name'] else ''})"
                         f"{detail}")
        if self.journal is None:
            return lines
        try:
            sync = self.sync_status()
        except WalletposError as exc:
            lines.append(f"backend   status unavailable: {exc.message}")
            return lines
        if not sync.enabled:
            lines.append("backend   disabled in config (offline-only terminal)")
        else:
            link = "enrolled" if sync.enrolled else f"NOT ENROLLED ({sync.enrolment_problem or 'no enrolment'})"
            lines.append(f"backend   {sync.backend_url}  {link}, circuit {sync.breaker_state}, "
                         f"{sync.consecutive_failures} failures in a row")
            if sync.last_error:
                lines.append(f"          last error {sync.last_error_at}: {sync.last_error}")
        age = f", oldest {int(sync.oldest_pending_age_s)} s" if sync.oldest_pending_age_s is not None else ""
        lines.append(f"queue     {sync.queue_depth} pending{age}; {sync.declined_after_offline} declined after "
                     f"offline approval, {sync.rejected} rejected by the backend")
        try:
            codes = self.journal.open_merchant_codes()
        except StorageError:
            codes = []
        if codes:
            lines.append(f"qr codes  {len(codes)} merchant code(s) not closed at the backend yet, oldest shown "
                         f"{utc_text(codes[0]['shown_at'])}")
        return lines

    def verify_journal(self) -> VerifyReport:
        return self.require_journal().verify()

    def export_journal(self, since: datetime | None) -> list[dict[str, Any]]:
        return [row.to_dict() for row in self.require_journal().rows_since(since)]

    def housekeeping(self) -> None:
        """Periodic upkeep (the sync worker and the TUI call it every few seconds): seal the journal
        head so that rows removed from its end are detected by `journal verify`."""
        if self.journal is not None:
            try:
                self.journal.seal_head(self.clock())
            except StorageError as exc:
                log.warning("housekeeping: %s", exc.message)

    def audit(self, event: str, *, actor: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        self.require_journal().audit(event, now=self.clock(), actor=actor, details=details)

    # -- backend: sync and online authorisation (terminal/sync.py, terminal/backend.py) ----------

    def _require_sync(self) -> SyncWorker:
        if self.sync is None:
            from terminal.backend import NotEnrolled

            raise NotEnrolled(self.storage_problem or "the backend is switched off ([backend] enabled = false)")
        return self.sync

    def sync_once(self, *, force: bool = True) -> SyncReport:
        """One sync cycle now (an operator's request goes ahead even while the circuit is open)."""
        return self._require_sync().run_once(force=force)

    def sync_status(self) -> SyncStatus:
        return self.sync.status() if self.sync is not None else disabled_status(self)

    def start_sync(self) -> None:
        """Sync in the background (the TUI and the gate loop call this once)."""
        self._require_sync().start()

    def stop_sync(self) -> None:
        if self.sync is not None:
            self.sync.stop()

    def enrol_backend(self, token: str) -> Enrolment:
        return self._require_sync().client.enrol(token)

    def payment_status(self, reference: str) -> PaymentStatus:
        """Merchant-presented QR: has the customer paid the payment with this reference?"""
        return self._require_sync().client.payment_status(reference)

    def cancel_merchant_payment(self, reference: str, reason: str = "closed_by_cashier") -> PaymentStatus:
        """Close a merchant code at the backend (`cancelled`, or `paid` when the customer paid first)."""
        return self._require_sync().client.cancel_payment(reference, reason)

    def code_on_screen(self, reference: str, shown: bool) -> None:
        """A screen starts (True) or stops (False) watching the merchant code `reference`: codes on
        screen are left to it; the others are settled by the sync worker (`codepay.settle_merchant_codes`)."""
        with self._codes_lock:
            (self._codes_on_screen.add if shown else self._codes_on_screen.discard)(reference)

    def settle_merchant_codes(self) -> list[TxnRow]:
        """Record payments made with merchant codes no screen watches and close those codes."""
        from terminal import codepay

        with self._codes_lock:
            on_screen = set(self._codes_on_screen)
        return codepay.settle_merchant_codes(self, on_screen=on_screen)

    def backend_sealing_key(self) -> bytes | None:
        """The backend's X25519 key that card data is sealed to (None until enrolled)."""
        enrolment = self.sync.client.enrolment if self.sync is not None else None
        return enrolment.sealing_public_key if enrolment is not None else None

    # -- QR payment codes: scanned codes and the terminal's merchant code (terminal/codepay.py) ---

    # -- contactless cards (terminal/cardpay.py over the EMV kernel) ------------------------------

    @property
    def zone(self) -> Any:
        return self._zone

    def card_aids(self) -> tuple[Any, ...]:
        """The applications the kernel accepts (built-in schemes plus config)."""
        if self._card_aids is None:
            from terminal.cardpay import supported_aids

            self._card_aids = supported_aids(self.config)
        return self._card_aids

    def open_reader(self, device: str | None = None) -> Any:
        """The configured card reader (`[reader] device`, or `device`) -> drivers.base.CardReader."""
        from drivers.readers import open_reader

        return open_reader(device or self.config.reader.device)

    def pay_card(self, transport: Any, amount: Money, *, operator: str | None = None,
                 started: float | None = None) -> Any:
        """Read the card behind `transport` with the EMV kernel, decide and journal -> CardPayResult."""
        from terminal import cardpay

        return cardpay.pay_card(self, transport, amount, operator=operator, started=started)

    def pay_code(self, text: str, amount: Money, *, operator: str | None = None) -> Any:
        """Pay with a code the customer shows (CPM, signed or numeric wallet code) -> CodePayResult."""
        from terminal import codepay

        return codepay.pay_code(self, text, amount, operator=operator)

    def merchant_qr(self, amount: Money) -> Any:
        """The dynamic merchant code for one payment -> codepay.MerchantQr."""
        from terminal import codepay

        return codepay.merchant_qr(self, amount)


def _result_message(approved: bool, auth_mode: str, final: RuleOutcome, answer: OnlineAnswer | None) -> str:
    return messages.payment_message(approved, auth_mode, final.reasons, backend_answered=answer is not None,
                                    backend_reason=answer.reason if answer is not None else None)


def build_service(
    config_path: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    clock: Clock = utc_now,
    env: Mapping[str, str] | None = None,
    configure_logging: bool = False,
) -> Service:
    """The bootstrap: load and validate config, open the data directory, wire the service."""
    config = load_config(config_path, env)
    return Service(config, resolve_data_dir(data_dir, env), clock=clock, configure_logging=configure_logging)


__all__ = [
    "CardFacts", "Method", "OnlineAnswer", "OnlineAuthorizer", "PaymentRequest", "PaymentResult",
    "Service", "build_service", "resolve_data_dir", "utc_text",
]
