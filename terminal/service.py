"""The one way in: the operations the TUI, the CLI, the gate loop, the benchmarks and the tests use.

A `Service` is built by `terminal.bootstrap.bootstrap` from config plus injectable parts; it holds
the parts (payments, the back office, the checkout, the sync worker) and offers what the user
interfaces need. Screens and commands hold a `Service` and go through it: never to a journal, a
checkout or a backend client directly. Payments themselves follow one path (`terminal.payments`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drivers.base import CardReader
from terminal import __version__
from terminal.backend import BackendClient, NotEnrolled
from terminal.backoffice import BackOffice, BackOfficeResult, Lookup, OriginalSale, SaleMark
from terminal.cardpay import CardPayments, CardPayResult
from terminal.catalogue import load_catalogue
from terminal.checkout import Checkout, CheckoutResult, Progress
from terminal.codepay import CodePayResult, MerchantCodes, MerchantQr, pay_code
from terminal.config import Config
from terminal.core.basket import Catalogue, parse_tax_rate
from terminal.core.emv import ApduTransport
from terminal.core.money import Currency, Money
from terminal.core.reports import DayReport
from terminal.core.rules import PaymentRequest, RuleOutcome, RuleSet, TerminalState
from terminal.errors import JournalIntegrityError, StorageError, WalletposError
from terminal.i18n import search_code
from terminal.journal import CodeClaim, Journal, TxnRow, VerifyReport, utc_text
from terminal.operators import Operators, PinCheck
from terminal.payment import CardFacts, Clock, PaymentResult
from terminal.payments import NO_FACTS, Payments
from terminal.receipts import ReportHeader, receipt_lines, report_lines
from terminal.security import TerminalKeys
from terminal.sync import Enrolment, PaymentStatus, SyncReport, SyncStatus, SyncWorker, disabled_status

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
                 on_close: Callable[[], None] | None = None) -> None:
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
        if self._checkout is not None:
            self._checkout.close()
        if self._sync is not None:
            self._sync.close()
        elif self._backend is not None:
            self._backend.close()
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
        """Periodic upkeep (the sync worker and the TUI call it every few seconds)."""
        self.payments.housekeeping()

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

    def backend_ack_key(self) -> bytes | None:
        """The backend's key for its acknowledgements of the journal head (None until enrolled)."""
        enrolment = self._backend.enrolment if self._backend is not None else None
        return getattr(enrolment, "ack_public_key", None) if enrolment is not None else None

    def integrity_problem(self) -> str | None:
        """Why offline approvals are off because of the journal (its hold), or None."""
        journal = self.journal
        return journal.integrity_problem() if journal is not None else None

    def resolve_integrity_hold(self, *, actor: str, note: str) -> str | None:
        """A technician turns offline approvals back on after checking (audited; the damage stays
        visible to `journal verify`). Returns the hold that was resolved."""
        return self.require_journal().resolve_hold(actor=actor, note=note, now=self.clock())

    def export_journal(self, since: datetime | None) -> list[dict[str, Any]]:
        return [row.to_dict() for row in self.require_journal().txns.rows_since(since)]

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
