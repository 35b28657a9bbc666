"""Refunds, voids, day close and receipts: the cashier's back-office operations over the journal.

Refunds and voids need a supervisor PIN, checked (and counted towards lockout) by `Operators`; the
pure checks are `terminal.core.rules.check_refund` / `check_void`. An allowed refund or void is a
signed journal row (kind refund/void, `reference` = the original sale) that syncs like any other;
the backend returns the money to the card or wallet of the original payment, so the card does not
need to be present. A refused attempt stores no transaction, only an audit entry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terminal.core.money import Money
from terminal.core.reports import DayReport, build_report
from terminal.core.rules import OriginalSale, RefundCheck, RefundProblem, check_refund, check_void
from terminal.errors import StorageError
from terminal.i18n import reason
from terminal.journal import NewTransaction, TxnRow
from terminal.operators import Operators, PinCheck
from terminal.payments import Payments
from terminal.receipts import receipt_lines, report_lines


@dataclass(frozen=True)
class BackOfficeResult:
    ok: bool
    problems: tuple[str, ...] = ()
    row: TxnRow | None = None
    supervisor: PinCheck | None = None
    refundable: Money | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def message(self, locale: str = "en") -> str:
        return "; ".join(reason(locale, p) for p in self.problems)


class BackOffice:
    """Refunds, voids, day close and receipts over the payments' journal and the operators' PINs."""

    def __init__(self, payments: Payments, operators: Operators) -> None:
        self.payments = payments
        self.operators = operators

    def original_sale(self, row: TxnRow) -> OriginalSale:
        related = self.payments.require_journal().txns.related(row.id)
        refunded = sum(r.amount.minor for r in related if r.kind == "refund" and r.approved)
        voided = any(r.kind == "void" and r.approved for r in related)
        return OriginalSale(kind=row.kind, approved=row.approved, voided=voided, amount=row.amount,
                            refunded=Money(refunded, row.amount.currency), created_at=row.created_at,
                            business_date=row.business_date)

    def find_original(self, reference: str) -> TxnRow | None:
        """A sale by its full id or an unambiguous prefix (receipts print the full reference)."""
        journal = self.payments.require_journal()
        row = journal.txns.get(reference.strip())
        if row is not None:
            return row
        matches = [r for r in journal.txns.find(reference) if r.kind in ("sale", "fare")]
        return matches[0] if len(matches) == 1 else None

    def _supervisor(self, supervisor_id: str | None, pin: str | None, purpose: str) -> PinCheck | None:
        if not supervisor_id or not pin:
            return None
        return self.operators.check(supervisor_id, pin, now=self.payments.clock(), purpose=purpose,
                                       require_role="supervisor")

    def refund(self, reference: str, amount: Money | None, *, operator: str | None,
               supervisor_id: str | None, supervisor_pin: str | None) -> BackOfficeResult:
        original = self.find_original(reference)
        if original is None:
            return BackOfficeResult(False, ("not_found",))
        sale = self.original_sale(original)
        amount = amount if amount is not None else sale.amount - sale.refunded
        # check everything but the PIN first, so a refund that cannot happen costs no PIN attempt
        window = self.payments.config.refunds.window_days
        pre = check_refund(sale, amount, now=self.payments.clock(), window_days=window, supervisor_verified=True)
        if not pre.allowed:
            return self._refused("refund_refused", original, pre, operator)
        supervisor = self._supervisor(supervisor_id, supervisor_pin, "refund_supervisor")
        check = check_refund(sale, amount, now=self.payments.clock(), window_days=window,
                             supervisor_verified=bool(supervisor and supervisor.ok))
        if not check.allowed:
            return self._refused("refund_refused", original, check, operator, supervisor)
        row = self.payments.require_journal().txns.append(
            NewTransaction(kind="refund", amount=amount, method=original.method, decision="approved",
                           reasons=("refund_approved_by_supervisor",), auth_mode="offline", scheme=original.scheme,
                           card_token=original.card_token, masked_pan=original.masked_pan, reference=original.id,
                           operator=operator, details={"supervisor": supervisor.operator.id if supervisor and
                                                       supervisor.operator else None}),
            now=self.payments.clock(), business_date=self.payments.business_date(),
        )
        return BackOfficeResult(True, (), row, supervisor, check.refundable - amount)

    def void_last(self, *, operator: str | None, supervisor_id: str | None,
                  supervisor_pin: str | None) -> BackOfficeResult:
        journal = self.payments.require_journal()
        last = journal.txns.last_sale()
        if last is None:
            return BackOfficeResult(False, ("not_found",))
        sale = self.original_sale(last)
        # the newest approved sale: later refunds of other sales do not matter, a later sale does
        newer = [r for r in journal.txns.recent(20)
                 if r.seq > last.seq and r.approved and r.kind in ("sale", "fare")]
        pre = check_void(sale, is_last_sale=not newer, business_date=self.payments.business_date(),
                         supervisor_verified=True)
        if not pre.allowed:
            return self._refused("void_refused", last, pre, operator)
        supervisor = self._supervisor(supervisor_id, supervisor_pin, "void_supervisor")
        check = check_void(sale, is_last_sale=not newer, business_date=self.payments.business_date(),
                           supervisor_verified=bool(supervisor and supervisor.ok))
        if not check.allowed:
            return self._refused("void_refused", last, check, operator, supervisor)
        row = journal.txns.append(
            NewTransaction(kind="void", amount=last.amount, method=last.method, decision="approved",
                           reasons=("void_approved_by_supervisor",), auth_mode="offline", scheme=last.scheme,
                           card_token=last.card_token, masked_pan=last.masked_pan, reference=last.id,
                           operator=operator, details={"supervisor": supervisor.operator.id if supervisor and
                                                       supervisor.operator else None}),
            now=self.payments.clock(), business_date=self.payments.business_date(),
        )
        return BackOfficeResult(True, (), row, supervisor)

    def _refused(self, event: str, original: TxnRow, check: RefundCheck, operator: str | None,
                 supervisor: PinCheck | None = None) -> BackOfficeResult:
        problems = tuple(
            f"supervisor_{supervisor.reason}"
            if p is RefundProblem.SUPERVISOR_PIN_REQUIRED and supervisor is not None and not supervisor.ok else p.value
            for p in check.problems
        )
        self.payments.audit(event, actor=operator, details={"original": original.id, "problems": list(problems)})
        return BackOfficeResult(False, problems, None, supervisor, check.refundable)

    # -- day close ---------------------------------------------------------------------------------

    def last_close(self) -> tuple[int, int]:
        """(last closed sequence number, last Z number)."""
        journal = self.payments.require_journal()
        return int(journal.meta("z_last_seq") or 0), int(journal.meta("z_number") or 0)

    def day_report(self) -> DayReport:
        """The X-report: everything since the last Z, nothing closed."""
        last_seq, _ = self.last_close()
        rows = [r for r in self.payments.require_journal().txns.rows_after(last_seq)]
        return build_report(rows, self.payments.currency.alpha, None)

    def close_day(self, *, operator: str | None) -> tuple[DayReport, list[Path]]:
        """Close the batch: Z-report of everything since the last Z, written as JSON and text."""
        journal = self.payments.require_journal()
        last_seq, z_number = self.last_close()
        rows = list(journal.txns.rows_after(last_seq))
        report = build_report(rows, self.payments.currency.alpha, z_number + 1)
        now = self.payments.clock()
        folder = self.payments.data_dir / "reports"
        stem = f"Z{report.z_number:04d}-{self.payments.business_date(now).isoformat()}"
        data = {**report.to_dict(), "terminal_id": self.payments.config.terminal.id, "closed_at": now.isoformat(),
                "closed_by": operator}
        text = "\n".join(report_lines(report, self.payments.config)) + "\n"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            paths = [self._write(folder / f"{stem}.json", json.dumps(data, indent=2, ensure_ascii=False) + "\n"),
                     self._write(folder / f"{stem}.txt", text)]
        except OSError as exc:
            raise StorageError(f"cannot write the day report to {folder}: {exc.strerror}") from None
        journal.set_meta({"z_last_seq": str(report.last_seq or last_seq), "z_number": str(report.z_number)})
        self.payments.audit("day_closed", actor=operator, details={
            "z_number": report.z_number, "net": report.net, "first_seq": report.first_seq,
            "last_seq": report.last_seq})
        return report, paths

    @staticmethod
    def _write(path: Path, text: str) -> Path:
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def save_receipt(self, row: TxnRow, locale: str | None = None) -> Path:
        folder = self.payments.data_dir / "receipts"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            text = "\n".join(receipt_lines(row, self.payments.config, locale)) + "\n"
            return self._write(folder / f"{row.id}.txt", text)
        except OSError as exc:
            raise StorageError(f"cannot write the receipt to {folder}: {exc.strerror}") from None
