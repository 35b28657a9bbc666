"""What was taken: transactions and their look-up, refunds, voids, X/Z reports and receipts, the
terminal's status, and the journal's checks, export and retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from terminal import __version__
from terminal.backoffice import BackOfficeResult, Lookup, OriginalSale, SaleMark
from terminal.core.money import Money
from terminal.core.reports import DayReport
from terminal.errors import JournalIntegrityError, StorageError, WalletposError
from terminal.i18n import search_code
from terminal.journal import ArchiveResult, TxnRow, VerifyJob, utc_text
from terminal.receipts import ReportHeader, receipt_lines, report_lines
from terminal.service.base import QueueSummary, ServiceBase


class RecordsOps(ServiceBase):
    """The back office and the journal as the screens and commands see them."""

    # -- back office ----------------------------------------------------------------------------

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

    def verify_journal_in_background(self, *, signatures: bool = False) -> VerifyJob:
        """The full verify in a thread, with its progress (`VerifyJob.progress`, `.wait()`)."""
        return self.require_journal().verify_in_background(signatures=signatures, ack_key=self.backend_ack_key())

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
