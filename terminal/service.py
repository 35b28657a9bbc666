"""The one way in: the operations the TUI, the CLI, the gate loop, the benchmarks and the tests use.

A `Service` is built by `terminal.bootstrap.bootstrap` from config plus injectable parts; it holds
the parts (payments, the back office, the checkout, the sync worker) and offers what the user
interfaces need. Screens and commands hold a `Service` and go through it: never to a journal, a
checkout or a backend client directly. Payments themselves follow one path (`terminal.payments`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drivers.base import CardReader
from terminal import __version__
from terminal.backend import BackendClient, NotEnrolled, SupportTicket
from terminal.backoffice import BackOffice, BackOfficeResult, Lookup, OriginalSale, SaleMark
from terminal.cardpay import CardPayments, CardPayResult
from terminal.catalogue import load_catalogue
from terminal.checkout import Checkout, CheckoutResult, Progress
from terminal.codepay import CodePayResult, MerchantCodes, MerchantQr, pay_code
from terminal.config import Config
from terminal.core import fares
from terminal.core.basket import Catalogue, parse_tax_rate
from terminal.core.emv import ApduTransport
from terminal.core.money import Currency, Money
from terminal.core.reports import DayReport
from terminal.core.rules import PaymentRequest, RuleOutcome, RuleSet, TerminalState
from terminal.doctor import DoctorContext, DoctorReport, run_doctor
from terminal.doctor.camera import PreviewFrame
from terminal.doctor.camera import preview as camera_preview
from terminal.errors import ConfigError, JournalIntegrityError, StorageError, WalletposError
from terminal.gate.lane import GateEvent, GateLane, read_status_file
from terminal.i18n import search_code
from terminal.journal import ArchiveResult, CodeClaim, Journal, TxnRow, VerifyJob, VerifyReport, utc_text
from terminal.logs import current_level, set_level
from terminal.operators import Operators, PinCheck
from terminal.payment import CardFacts, Clock, FareResult, PaymentResult
from terminal.payments import NO_FACTS, Payments
from terminal.receipts import ReportHeader, receipt_lines, report_lines
from terminal.security import TerminalKeys
from terminal.support import bundle_name, make_bundle, removable_drives, write_bundle, write_to_drive
from terminal.sync import Enrolment, PaymentStatus, SyncReport, SyncStatus, SyncWorker, disabled_status
from terminal.tapreplay import ReplayTransport
from terminal.tapstore import SavedTap, TapCheck, load_trace_file
from terminal.transit import GatePlace, TransitTaps

if TYPE_CHECKING:  # OpenCV loads only when a camera is opened
    from drivers.camera import CameraScanner

log = logging.getLogger("walletpos.service")


@dataclass(frozen=True)
class QueueSummary:
    """The sync queue at a glance (status bar): depth and the oldest unsent row's time."""

    pending: int
    oldest_pending_at: datetime | None


class Service:
    """The terminal's operations over its parts (see `terminal.bootstrap` for how they are built)."""

    def __init__(self, *, payments: Payments, operators: Operators | None, backoffice: BackOffice | None,
                 cards: CardPayments, merchant_codes: MerchantCodes, backend: BackendClient | None = None,
                 sync: SyncWorker | None = None, checkout: Checkout | None = None,
                 on_close: Callable[[], None] | None = None, transit: Callable[[], TransitTaps] | None = None,
                 gate: GateLane | None = None) -> None:
        self.payments = payments
        self._operators = operators
        self._backoffice = backoffice
        self.cards = cards
        self.merchant_codes = merchant_codes
        self._backend = backend
        self._sync = sync
        self._checkout = checkout
        self._on_close = on_close
        self._closed = threading.Event()
        self._support_upload: threading.Thread | None = None
        self.last_support_ticket: SupportTicket | None = None
        if sync is not None:
            sync.on_support_request(self._support_requested)
        self._transit = transit
        self._gate = gate
        self._catalogue: Catalogue | None = None

    # -- basics ---------------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self.payments.config

    @property
    def data_dir(self) -> Path:
        return self.payments.data_dir

    @property
    def clock(self) -> Clock:
        return self.payments.clock

    @property
    def currency(self) -> Currency:
        return self.payments.currency

    @property
    def zone(self) -> ZoneInfo:
        return self.payments.zone

    @property
    def keys(self) -> TerminalKeys | None:
        return self.payments.keys

    @property
    def journal(self) -> Journal | None:
        """The journal (None when it could not be opened). For the terminal's own modules and tests;
        screens and commands use the operations below."""
        return self.payments.journal

    @property
    def checkout(self) -> Checkout | None:
        """The checkout (None without devices): for tests and diagnostics; screens use the
        operations below (`take_payment`, `show_merchant_qr`, ...)."""
        return self._checkout

    @property
    def sync_worker(self) -> SyncWorker | None:
        """The sync worker (None when the backend is off): for tests and diagnostics."""
        return self._sync

    @property
    def backend(self) -> BackendClient | None:
        """The backend client (None when the backend is off): for tests and diagnostics."""
        return self._backend

    @property
    def storage_problem(self) -> str | None:
        """Why the journal could not be opened at start (None when it is open)."""
        return self.payments.storage.problem

    @property
    def last_storage_error(self) -> str | None:
        """The last append that failed (cleared by the next success)."""
        return self.payments.storage.last_error

    @property
    def rule_set(self) -> RuleSet:
        """The rules in force (local config tightened by the backend's limits)."""
        return self.payments.rules.current

    def require_journal(self) -> Journal:
        return self.payments.require_journal()

    def business_date(self, moment: datetime | None = None) -> date:
        return self.payments.business_date(moment)

    def last_sync_at(self) -> datetime:
        return self.payments.last_sync_at()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._gate is not None:
            self._gate.close()
        if self._checkout is not None:
            self._checkout.close()
        if self._sync is not None:
            self._sync.close()
        elif self._backend is not None:
            self._backend.close()
        if self._backoffice is not None:
            self._backoffice.close()  # an automatic day close that runs ends before the journal closes
        journal = self.payments.journal
        if journal is not None:
            journal.close()
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def audit(self, event: str, *, actor: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        self.payments.audit(event, actor=actor, details=details)

    def housekeeping(self) -> None:
        """Periodic upkeep (the sync worker and the TUI call it every few seconds); the automatic day
        close starts from here in a thread of its own (`BackOffice.housekeeping`)."""
        self.payments.housekeeping()
        if self._backoffice is not None:
            self._backoffice.housekeeping()

    # -- rules and payments ---------------------------------------------------------------------

    def terminal_state(self, card_token: str | None) -> TerminalState:
        return self.payments.terminal_state(card_token)

    def explain(self, request: PaymentRequest) -> tuple[RuleOutcome, TerminalState]:
        return self.payments.explain(request)

    def pay(self, request: PaymentRequest, facts: CardFacts = NO_FACTS, *, kind: str = "sale",
            operator: str | None = None, txn_id: str | None = None, claim: CodeClaim | None = None,
            online_extras: Mapping[str, Any] | None = None) -> PaymentResult:
        """Decide and journal one payment (`terminal.payments.Payments.pay`)."""
        return self.payments.pay(request, facts, kind=kind, operator=operator, txn_id=txn_id, claim=claim,
                                 online_extras=online_extras)

    def open_reader(self, device: str | None = None) -> CardReader:
        """The configured card reader (`[reader] device`, or `device`)."""
        from drivers.readers import open_reader

        return open_reader(device or self.config.reader.device)

    def open_scanner(self, source: str | None = None) -> CameraScanner:
        """A code scanner on the configured camera (`[camera] source`, or `source`: a device, a video,
        an image, a folder of images, an rtsp:// stream or sim:)."""
        from drivers.camera import scanner_from_config

        return scanner_from_config(self.config, source)

    def pay_card(self, transport: ApduTransport, amount: Money, *, operator: str | None = None,
                 started: float | None = None) -> CardPayResult:
        """Read the card behind `transport` with the EMV kernel, decide and journal."""
        return self.cards.pay(transport, amount, operator=operator, started=started)

    def pay_code(self, text: str, amount: Money, *, operator: str | None = None) -> CodePayResult:
        """Pay with a code the customer shows (CPM, signed or numeric wallet code)."""
        return pay_code(self.payments, text, amount, operator=operator)

    # -- the checkout: reader and camera raced for one sale ---------------------------------------

    def can_take_payments(self) -> bool:
        """A reader or a camera is attached (the checkout has devices to wait on)."""
        return self._checkout is not None and self._checkout.has_devices()

    def _require_checkout(self) -> Checkout:
        if self._checkout is None:
            raise WalletposError("no card reader or camera is attached to this terminal")
        return self._checkout

    def take_payment(self, amount: Money, *, operator: str | None, cancel: threading.Event,
                     progress: Progress | None = None, note: str = "",
                     details: Mapping[str, Any] | None = None) -> CheckoutResult:
        """Wait for a card or a code (until `cancel`), decide and journal the payment (`details`: the
        sale's items and tax, its part in a split tender, journaled with the row)."""
        return self._require_checkout().take_payment(amount, operator=operator, cancel=cancel, progress=progress,
                                                     note=note, details=details)

    def retry_with_pin(self, cancel: threading.Event, pin: str) -> CheckoutResult:
        return self._require_checkout().retry_with_pin(cancel, pin)

    def show_merchant_qr(self, amount: Money, operator: str | None = None,
                         details: Mapping[str, Any] | None = None) -> MerchantQr:
        """The merchant code of this sale, recorded before it is shown and watched by the checkout
        (raises `codepay.MerchantCodeUnavailable`, with a sentence, when the backend cannot be told)."""
        return self._require_checkout().merchant_qr(amount, operator, details)

    def wait_merchant_qr(self, qr: MerchantQr, *, cancel: threading.Event,
                         operator: str | None = None) -> CheckoutResult | None:
        return self._require_checkout().wait_merchant_qr(qr, cancel=cancel, operator=operator)

    def close_merchant_qr(self, qr: MerchantQr, operator: str | None = None) -> CheckoutResult | None:
        return self._require_checkout().close_merchant_qr(qr, operator)

    def device_states(self) -> tuple[str, str]:
        """(reader state, camera state) for status bars: ready, card_present, absent, error, none."""
        return self._checkout.device_states() if self._checkout is not None else ("none", "none")

    def device_report(self) -> dict[str, dict[str, str]]:
        """Reader and camera as their watchers see them: configured device, state and last detail."""
        out: dict[str, dict[str, str]] = {}
        checkout = self._checkout
        for kind, configured in (("reader", self.config.reader.device), ("camera", self.config.camera.source)):
            watcher = (checkout.reader if kind == "reader" else checkout.scanner) if checkout else None
            if watcher is None:
                out[kind] = {"configured": configured, "state": "not attached", "name": "", "detail": ""}
                continue
            status = watcher.status
            out[kind] = {"configured": configured, "state": status.state, "name": status.name,
                         "detail": status.detail}
        return out

    # -- merchant codes -------------------------------------------------------------------------

    def merchant_qr(self, amount: Money) -> MerchantQr:
        """A merchant code no screen watches (`walletpos qr`): the sync worker settles it."""
        return self.merchant_codes.create(amount)

    def payment_status(self, reference: str) -> PaymentStatus:
        """Merchant-presented QR: has the customer paid the payment with this reference?"""
        return self.merchant_codes.status(reference)

    def cancel_merchant_payment(self, reference: str, reason: str = "closed_by_cashier") -> PaymentStatus:
        return self.merchant_codes.cancel(reference, reason)

    def open_merchant_codes(self) -> list[dict[str, Any]]:
        """Merchant codes shown and not yet closed at the backend, oldest first."""
        return self.require_journal().merchant_codes.still_open()

    def settle_merchant_codes(self) -> list[TxnRow]:
        """Record payments made with merchant codes no screen watches and close those codes."""
        return self.merchant_codes.settle()

    # -- operators ------------------------------------------------------------------------------

    @property
    def operators(self) -> Operators:
        if self._operators is None:
            raise StorageError(self.storage_problem or "the journal is not open", title="Cannot record")
        return self._operators

    def has_operators(self) -> bool:
        """Is at least one operator set up (the sign-in screen says how to add one when not)?"""
        return bool(self.operators.all())

    def sign_in(self, operator_id: str, pin: str) -> PinCheck:
        return self.operators.check(operator_id, pin, now=self.clock())

    # -- back office ----------------------------------------------------------------------------

    @property
    def backoffice(self) -> BackOffice:
        if self._backoffice is None:
            raise StorageError(self.storage_problem or "the journal is not open", title="Cannot record")
        return self._backoffice

    def recent_transactions(self, limit: int = 50, *, search: str | None = None) -> list[TxnRow]:
        """Newest first; `search` matches reference, card digits, method, scheme, kind or result, in
        the words of any of the terminal's languages ('declined', '拒绝')."""
        return self.require_journal().txns.recent(limit, search=search_code(search) if search else None)

    def find_transaction(self, reference: str) -> TxnRow | None:
        """Any transaction by a reference that names exactly one (see `lookup`)."""
        return self.backoffice.lookup(reference, sales_only=False).row

    def lookup(self, reference: str, *, sales_only: bool = True) -> Lookup:
        """What a typed reference finds ('0042', '2026-11-20/0042', an id or the start of one): one
        row, several (ambiguous), or none."""
        return self.backoffice.lookup(reference, sales_only=sales_only)

    def sale_marks(self, rows: list[TxnRow]) -> dict[str, SaleMark]:
        """Which of these sales were voided or refunded since (for lists)."""
        return self.backoffice.marks(rows)

    def refund_check(self, reference: str, amount: Money | None) -> BackOfficeResult:
        """Can this refund be done (everything but the supervisor PIN)?"""
        return self.backoffice.refund_check(reference, amount)

    def void_check(self) -> BackOfficeResult:
        """Can the last sale be voided (everything but the supervisor PIN)? The row is that sale."""
        return self.backoffice.void_check()

    def last_sale(self) -> TxnRow | None:
        return self.require_journal().txns.last_sale()

    def find_original(self, reference: str) -> TxnRow | None:
        """A sale by its full id or an unambiguous prefix."""
        return self.backoffice.find_original(reference)

    def original_sale(self, row: TxnRow) -> OriginalSale:
        """What a refund or void of `row` needs to know (refunded so far, voided)."""
        return self.backoffice.original_sale(row)

    def refund(self, reference: str, amount: Money | None, *, operator: str | None, supervisor_id: str | None,
               supervisor_pin: str | None) -> BackOfficeResult:
        return self.backoffice.refund(reference, amount, operator=operator, supervisor_id=supervisor_id,
                                      supervisor_pin=supervisor_pin)

    def void_last(self, *, operator: str | None, supervisor_id: str | None,
                  supervisor_pin: str | None) -> BackOfficeResult:
        return self.backoffice.void_last(operator=operator, supervisor_id=supervisor_id,
                                         supervisor_pin=supervisor_pin)

    def day_report(self) -> DayReport:
        return self.backoffice.day_report()

    def close_day(self, *, operator: str | None, supervisor_id: str | None = None, supervisor_pin: str | None = None,
                  locale: str | None = None) -> tuple[DayReport, list[Path]]:
        """The Z-report, approved by a supervisor (`backoffice.BackOffice.close_day`; raises
        `DayCloseRefused`)."""
        return self.backoffice.close_day(operator=operator, supervisor_id=supervisor_id,
                                         supervisor_pin=supervisor_pin, locale=locale)

    def end_shift(self, *, operator: str | None, supervisor_id: str | None = None,
                  supervisor_pin: str | None = None) -> int:
        return self.backoffice.end_shift(operator=operator, supervisor_id=supervisor_id,
                                         supervisor_pin=supervisor_pin)

    def unsynced(self) -> tuple[int, int]:
        """(rows, amount) not yet accepted by the backend."""
        return self.backoffice.unsynced()

    def report_lines(self, report: DayReport, locale: str | None = None, *, closed_by: str | None = None,
                     operator: str | None = None) -> list[str]:
        """The X- or Z-report as text, with the terminal, the time and who closed it, cashiers by name."""
        names = {str(r["id"]): str(r["name"]) for r in self.operators.records()}
        header = ReportHeader(self.config.terminal.id, self.clock(), closed_by, operator)
        return report_lines(report, self.config, locale, header, names)

    def receipt_lines(self, row: TxnRow, locale: str | None = None) -> list[str]:
        parts = self.backoffice.sale_parts(row) if self._backoffice is not None else []
        return receipt_lines(row, self.config, locale, parts)

    # -- the counter: items, tenders, the customer's PIN pad ----------------------------------------

    def catalogue(self) -> Catalogue:
        """The products of `[checkout] catalogue` (read once; empty without one)."""
        if self._catalogue is None:
            self._catalogue = load_catalogue(self.config, self.data_dir)
        return self._catalogue

    def default_tax_rate(self) -> int:
        """The tax rate of items keyed by amount (hundredths of a percent)."""
        return parse_tax_rate(self.config.checkout.default_tax_rate)

    def next_item_code(self, cancel: threading.Event) -> str | None:
        """A code shown to the camera on the checkout screen (a product's code), or None once `cancel`."""
        if self._checkout is None:
            cancel.wait()
            return None
        return self._checkout.next_code(cancel)

    def pay_cash(self, amount: Money, tendered: Money, *, operator: str | None,
                 details: Mapping[str, Any] | None = None) -> TxnRow:
        """Journal a cash tender (`tendered` for `amount`, the change recorded)."""
        return self.backoffice.pay_cash(amount, tendered, operator=operator, details=details)

    def pin_binding(self) -> tuple[bytes, dict[str, Any]] | None:
        """The backend's sealing key and what the customer's PIN is bound to, for the PIN pad; None
        when no payment waits for a PIN or the terminal is not enrolled."""
        return self._checkout.pin_binding() if self._checkout is not None else None

    def retry_with_pin_block(self, cancel: threading.Event, pin_block: str) -> CheckoutResult:
        """Decide the payment that waited for the customer's PIN, with the PIN block the PIN pad sealed."""
        return self._require_checkout().retry_with_pin_block(cancel, pin_block)

    def drop_pending_pin(self) -> None:
        if self._checkout is not None:
            self._checkout.drop_pending_pin()

    def save_receipt(self, row: TxnRow, locale: str | None = None) -> Path:
        return self.backoffice.save_receipt(row, locale)

    # -- state and reports ----------------------------------------------------------------------

    def queue_summary(self) -> QueueSummary:
        summary = self.require_journal().sync.queue_summary()
        oldest = summary["oldest_pending_at"]
        return QueueSummary(summary["pending"], datetime.fromisoformat(oldest) if oldest else None)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": __version__,
            "terminal_id": self.config.terminal.id,
            "mode": self.config.terminal.mode,
            "config_file": self.config.source,
            "data_dir": str(self.data_dir),
            "currency": self.currency.alpha,
            "storage": {"ok": self.journal is not None, "problem": self.storage_problem},
            "devices": self.device_report(),
            "backend": self._backend_summary(),
        }
        journal = self.journal
        if journal is None:
            out["approvals"] = "disabled: the journal cannot record"
            return out
        try:
            head = journal.head()
        except JournalIntegrityError as exc:
            out["integrity"] = {"ok": False, "problem": exc.message}
            out["approvals"] = f"offline approvals disabled: {exc.message}"
            return out
        queue = journal.sync.queue_summary()
        exposure = Money(head.exposure, self.currency)
        out.update(
            journal={"path": str(journal.path), **head.counts()},
            unsynced_exposure={"amount": exposure.minor, "text": str(exposure),
                               "cap": self.rule_set.exposure_cap.minor},
            queue={"pending": queue["pending"], "oldest_pending_at": queue["oldest_pending_at"]},
            last_sync_at=head.last_sync_ok_at,
            deny_list={"version": head.deny_version, "entries": head.deny_count},
            merchant_codes_open=len(journal.merchant_codes.still_open()),
            integrity={"ok": head.hold is None, "problem": head.hold},
            approvals="enabled" if head.hold is None else f"offline approvals disabled: {head.hold}",
        )
        return out

    def diagnostics(self) -> list[str]:
        """What a technician checks first, one line each: devices, backend link, queue."""
        lines: list[str] = []
        for kind, dev in self.device_report().items():
            detail = f" - {dev['detail']}" if dev["detail"] else ""
            lines.append(f"{kind:<9} {dev['state']}  ({dev['configured']}{', ' + dev['name'] if dev['name'] else ''})"
                         f"{detail}")
        journal = self.journal
        if journal is None:
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
            codes = journal.merchant_codes.still_open()
        except StorageError:
            codes = []
        if codes:
            lines.append(f"qr codes  {len(codes)} merchant code(s) not closed at the backend yet, oldest shown "
                         f"{utc_text(codes[0]['shown_at'])}")
        return lines

    @property
    def journal_path(self) -> Path:
        return self.require_journal().path

    def verify_journal(self, *, signatures: bool = False) -> VerifyReport:
        """The whole journal checked, read-only (`terminal.journal.chain.verify_journal`)."""
        return self.require_journal().verify(signatures=signatures, ack_key=self.backend_ack_key())

    def verify_journal_in_background(self, *, signatures: bool = False) -> VerifyJob:
        """The full verify in a thread, with its progress (`VerifyJob.progress`, `.wait()`)."""
        return self.require_journal().verify_in_background(signatures=signatures, ack_key=self.backend_ack_key())

    def backend_ack_key(self) -> bytes | None:
        """The backend's key for its acknowledgements of the journal head (None until enrolled)."""
        enrolment = self._backend.enrolment if self._backend is not None else None
        return getattr(enrolment, "ack_public_key", None) if enrolment is not None else None

    def integrity_problem(self) -> str | None:
        """Why offline approvals are off because of the journal (its hold), or None."""
        journal = self.journal
        return journal.integrity_problem() if journal is not None else None

    def resolve_rejected(self, seqs: list[int], *, actor: str, note: str) -> int:
        """A technician writes off rows the backend rejected (audited): they stop counting as exposure."""
        return self.require_journal().sync.resolve_rejected(seqs, now=self.clock(), actor=actor, note=note)

    def resolve_integrity_hold(self, *, actor: str, note: str) -> str | None:
        """A technician turns offline approvals back on after checking (audited; the damage stays
        listed by `journal verify`). Returns the hold that was resolved."""
        return self.require_journal().resolve_hold(actor=actor, note=note, now=self.clock())

    def export_journal(self, since: datetime | None) -> Iterator[dict[str, Any]]:
        """Every row (created at or after `since`, found by the time index) as a dict, streamed in pages."""
        return (row.to_dict() for row in self.require_journal().txns.rows_since(since))

    def archive_journal(self, *, keep_days: int | None = None) -> ArchiveResult:
        """Retention now (housekeeping runs it hourly): rows the backend holds, older than `keep_days`
        (default: [journal] keep_days) business days, leave the device behind a signed checkpoint."""
        now = self.clock()
        return self.require_journal().archive(keep_days=keep_days or self.config.journal.keep_days,
                                              today=self.payments.business_date(now), now=now)

    # -- technician: doctor, test tap, failed taps, camera, log level, support bundle ---------------

    def _backend_summary(self) -> dict[str, Any]:
        """The backend as `status` names it: where, whether enrolled, and the last exchange."""
        client = self._backend
        out: dict[str, Any] = {"enabled": self.config.backend.enabled, "url": self.config.backend.url,
                               "enrolled": bool(client is not None and client.enrolled),
                               "problem": (client.enrolment_problem if client is not None else
                                           None if not self.config.backend.enabled else
                                           self.storage_problem or "no backend client")}
        if client is not None and self.journal is not None:
            try:
                sync = self.sync_status()
            except WalletposError as exc:
                out["problem"] = exc.message
                return out
            out.update(last_success_at=sync.last_success_at, last_error=sync.last_error,
                       last_error_at=sync.last_error_at, circuit=sync.breaker_state)
        return out

    def _doctor_context(self, *, camera_seconds: float, latency_requests: int) -> DoctorContext:
        journal = self.journal
        checkout = self._checkout
        reader = checkout.reader if checkout is not None else None
        camera = checkout.scanner if checkout is not None else None
        return DoctorContext(
            config=self.config, data_dir=self.data_dir,
            journal_path=journal.path if journal is not None else self.data_dir / "journal.sqlite3",
            clock=self.clock, storage_problem=self.storage_problem, backend=self._backend,
            sync_status=self.sync_status, verify_journal=self.verify_journal,
            integrity_problem=self.integrity_problem, last_checkpoint=self.last_checkpoint,
            last_sync_at=self.last_sync_at, rules_local=self.payments.rules.local, rules_current=self.rule_set,
            stored_limits=self._sync.stored_limits() if self._sync is not None else None,
            reader=reader.device if reader is not None else None,
            reader_status=reader.status if reader is not None else None,
            scanner=camera.device if camera is not None else None,
            camera_status=camera.status if camera is not None else None,
            camera_seconds=camera_seconds, latency_requests=latency_requests)

    def doctor(self, areas: Iterable[str] | None = None, *, camera_seconds: float = 1.5,
               latency_requests: int = 5) -> DoctorReport:
        """Check every part of the terminal (`terminal.doctor`): areas side by side, each check with
        its figure, time and, when it fails, the one thing to do next."""
        return run_doctor(self._doctor_context(camera_seconds=camera_seconds, latency_requests=latency_requests),
                          areas)

    def last_checkpoint(self) -> dict[str, Any] | None:
        """The journal's last signed checkpoint (the rows verified up to it), None before the first."""
        return self.require_journal().chain.last_checkpoint()

    def camera_preview(self, *, stop: threading.Event, show: Callable[[PreviewFrame], None], columns: int = 40,
                       rows: int = 12) -> None:
        """The camera as half-block pictures with sharpness and decode rate, until `stop` (the
        checkout's camera is borrowed: call it while no sale runs). Raises ReaderUnavailableError."""
        camera_preview(self._doctor_context(camera_seconds=0, latency_requests=0), stop=stop, show=show,
                       columns=columns, rows=rows)

    def test_tap(self, amount: Money | None = None, *, cancel: threading.Event, timeout_s: float = 30.0,
                 device: str | None = None) -> TapCheck:
        """Wait for a card and read it with the EMV kernel, keeping every command and answer: nothing is
        journaled, sealed or sent (a card that cannot be read is kept as a failed tap). The checkout's
        reader when it has one, else the configured reader (or `device`)."""
        amount = amount or Money(100, self.currency)
        checkout = self._checkout
        if device is None and checkout is not None and checkout.reader is not None:
            reader_name = checkout.reader.status.name or self.config.reader.device
            found = checkout.with_next_card(
                lambda session: self.cards.check_tap(session, amount, reader=reader_name),
                cancel=cancel, timeout_s=timeout_s)
            return found if found is not None else TapCheck("no_card", "no card was presented", reader_name)
        from drivers.base import ReaderUnavailableError

        spec = device or self.config.reader.device
        try:
            reader = self.open_reader(spec)
        except ReaderUnavailableError as exc:
            return TapCheck("reader_unavailable", exc.message, spec)
        with reader:
            deadline = time.monotonic() + timeout_s
            try:
                while not cancel.is_set() and time.monotonic() < deadline:
                    session = reader.wait_for_card(min(0.2, max(0.0, deadline - time.monotonic())))
                    if session is not None:
                        started = time.perf_counter()
                        with session:
                            return self.cards.check_tap(session, amount, reader=reader.name, started=started)
            except ReaderUnavailableError as exc:
                return TapCheck("reader_unavailable", exc.message, reader.name)
        return TapCheck("no_card", "no card was presented", reader.name)

    def failed_taps(self) -> list[SavedTap]:
        """The kept failed taps (redacted traces), newest first."""
        return self.cards.failed_taps.list()

    def failed_tap_files(self) -> list[Path]:
        return self.cards.failed_taps.paths()

    def replay_tap(self, trace: str | Path | Mapping[str, Any], amount: Money | None = None) -> TapCheck:
        """Read a recorded card again through the kernel: a kept failed tap (its name), a trace file,
        or a trace item. Nothing is journaled; a replay is never kept as a failed tap."""
        if isinstance(trace, Mapping):
            item, label = dict(trace), str(trace.get("label", "trace"))
        elif isinstance(trace, str) and "/" not in trace and not trace.startswith("."):
            item, label = self.cards.failed_taps.load(trace), trace
        else:
            item, label = load_trace_file(Path(trace)), Path(trace).name
        meta = item.get("walletpos") or {}
        if amount is None and isinstance(meta.get("amount"), int) and meta.get("currency") == self.currency.alpha:
            amount = Money(meta["amount"], self.currency)
        transport = ReplayTransport(item)
        return self.cards.check_tap(transport, amount or Money(100, self.currency), reader=f"replay of {label}",
                                    source=f"replay:{label}")

    def log_level(self) -> str:
        return current_level()

    def set_log_level(self, level: str, *, actor: str | None = None) -> str:
        """Change the log level now, until the next start (the config's level then applies again)."""
        old = current_level()
        new = set_level(level)
        if new != old:
            try:
                self.audit("log_level", actor=actor, details={"from": old, "to": new})
            except StorageError as exc:
                log.warning("log level change not recorded: %s", exc.message)
        return new

    def support_bundle(self, out: Path | None = None) -> Path:
        """A support bundle in the data directory (or at `out`): `terminal.support`."""
        return write_bundle(self, out)

    def support_bundle_to_drive(self, drive: Path | None = None) -> Path:
        """A support bundle on a removable drive (the first one mounted when `drive` is None)."""
        if drive is None:
            drives = removable_drives()
            if not drives:
                raise StorageError("no removable drive is mounted; plug in a USB drive (or give its path)")
            drive = drives[0]
        return write_to_drive(self, drive)

    def upload_support_bundle(self, reason: str = "technician") -> SupportTicket:
        """Send a support bundle to the backend; the ticket id is what the technician reads out."""
        client = self._backend
        if client is None:
            raise NotEnrolled(self.storage_problem or "the backend is switched off ([backend] enabled = false); "
                              "write the bundle to a drive instead")
        data = make_bundle(self)
        ticket = client.upload_support_bundle(data, file_name=bundle_name(self), reason=reason)
        self.last_support_ticket = ticket
        try:
            self.audit("support_bundle_sent", details={"ticket": ticket.ticket, "reason": reason,
                                                       "size": ticket.size})
        except StorageError as exc:
            log.warning("support bundle upload not recorded: %s", exc.message)
        return ticket

    def _support_requested(self) -> None:
        """The heartbeat said support asks for a bundle: send one in the background (once at a time)."""
        running = self._support_upload
        if running is not None and running.is_alive():
            return

        def send() -> None:
            try:
                ticket = self.upload_support_bundle("backend_request")
                log.info("support bundle sent at the backend's request: ticket %s", ticket.ticket)
            except WalletposError as exc:
                log.warning("support bundle asked for by the backend not sent: %s", exc.message)

        self._support_upload = threading.Thread(target=send, name="walletpos-support-bundle", daemon=True)
        self._support_upload.start()


    # -- transit gates ----------------------------------------------------------------------------

    def _require_transit(self) -> TransitTaps:
        if self._transit is None:
            raise ConfigError("this terminal has no transit gate configured ([terminal] mode = \"transit\")")
        return self._transit()

    @property
    def fare_table(self) -> fares.FareTable:
        """The fare table in force (`[transit] fare_table`; read on first use)."""
        return self._require_transit().table

    def gate_place(self, station: str | None = None, direction: str | None = None,
                   gate_id: str | None = None) -> GatePlace:
        """The configured gate (station, direction, gate id), with any of them replaced."""
        place = GatePlace.configured(self.config)
        return GatePlace(gate_id or place.gate_id, station or place.station, direction or place.direction)

    def gate_tap(self, transport: ApduTransport, place: GatePlace | None = None, *,
                 started: float | None = None) -> FareResult:
        """A card tapped at a gate: read it, decide the tap (gate rules, fare) and journal it as a
        fare row (`terminal.transit.TransitTaps.tap_card`, `Payments.charge_fare`)."""
        return self._require_transit().tap_card(transport, place or self.gate_place(), started=started)

    def gate_code(self, text: str, place: GatePlace | None = None, *, started: float | None = None) -> FareResult:
        """A wallet code shown to a gate's camera: verified offline, decided and journaled."""
        return self._require_transit().tap_code(text, place or self.gate_place(), started=started)

    @property
    def gate(self) -> GateLane | None:
        """The gate lane of `walletpos gate` (None unless bootstrapped with gate devices)."""
        return self._gate

    def start_gate(self) -> GateLane:
        """Start the gate lane: reader and camera armed for good, every tap decided and the gate driven."""
        if self._gate is None:
            raise WalletposError("no gate devices: bootstrap with gate=GateDevices(...)")
        self._gate.start()
        return self._gate

    def on_gate_event(self, listener: Callable[[GateEvent], None]) -> None:
        """Be told of every decided tap (the passenger display)."""
        if self._gate is not None:
            self._gate.subscribe(listener)

    def gate_status(self) -> dict[str, Any]:
        """The technician's view of a gate: taps per minute, decision latency (p50/p99), reader,
        camera and gate hardware state (from the running lane, or from the status file the running
        `walletpos gate` writes when asked from another process), the deny list's version, size and
        memory, the sync queue and the last sync."""
        if self._gate is not None:
            out: dict[str, Any] = {"running_here": True, **self._gate.status()}
        else:
            written = read_status_file(self.data_dir)
            out = {"running_here": False, "status_file": written}
            place = GatePlace.configured(self.config)
            out["gate"] = (written or {}).get("gate") or {"id": place.gate_id, "station": place.station,
                                                          "direction": place.direction}
            for key in ("devices", "taps_per_minute", "decision_ms", "outcomes", "signs", "uptime_s", "pid"):
                out[key] = (written or {}).get(key)
            out["status_written_at"] = (written or {}).get("written_at")
        journal = self.journal
        if journal is not None:
            try:
                head = journal.head()
                queue = journal.sync.queue_summary()
            except WalletposError as exc:
                out["journal_problem"] = exc.message
            else:
                out["deny_list"] = {"version": head.deny_version, "entries": head.deny_count,
                                    "memory_bytes": journal.deny.memory_bytes()}
                out["queue"] = {"pending": queue["pending"], "oldest_pending_at": queue["oldest_pending_at"]}
                out["last_sync_at"] = head.last_sync_ok_at
                out["integrity"] = {"ok": head.hold is None, "problem": head.hold}
                since = self.clock() - timedelta(minutes=1)
                out["fare_rows_last_minute"] = sum(1 for row in journal.txns.rows_since(since) if row.kind == "fare")
        return out

    def transit_journeys(self, card_token: str, day: date) -> dict[str, Any]:
        """The back office's journeys and daily charge of a card (`GET /v1/transit/cards/...`)."""
        return self._require_sync().client.transit_journeys(card_token, day)

    # -- backend: sync and online authorisation ---------------------------------------------------

    def sync_enabled(self) -> bool:
        """Is there a backend to sync with ([backend] enabled, and the journal open)?"""
        return self._sync is not None

    def _require_sync(self) -> SyncWorker:
        if self._sync is None:
            raise NotEnrolled(self.storage_problem or "the backend is switched off ([backend] enabled = false)")
        return self._sync

    def sync_once(self, *, force: bool = True) -> SyncReport:
        """One sync cycle now (an operator's request goes ahead even while the circuit is open)."""
        return self._require_sync().run_once(force=force)

    def sync_status(self) -> SyncStatus:
        if self._sync is not None:
            return self._sync.status()
        return disabled_status(self.require_journal(), self.config.backend.url, self.clock)

    def start_sync(self) -> None:
        """Sync in the background (the TUI and the gate loop call this once)."""
        self._require_sync().start()

    def stop_sync(self) -> None:
        if self._sync is not None:
            self._sync.stop()

    def nudge_sync(self) -> None:
        """Start the next background sync cycle now."""
        if self._sync is not None:
            self._sync.nudge()

    def run_sync(self, *, timeout_s: float) -> list[SyncReport]:
        """Sync cycles with backoff until the queue is empty, a failure is final, or the time is up."""
        return self._require_sync().drain(timeout_s=timeout_s)

    def enrol_backend(self, token: str) -> Enrolment:
        return self._require_sync().client.enrol(token)

    def backend_sealing_key(self) -> bytes | None:
        """The backend's X25519 key that card data is sealed to (None until enrolled)."""
        return self.payments.sealing_key()


__all__ = ["QueueSummary", "Service"]
