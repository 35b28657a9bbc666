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
from typing import TYPE_CHECKING, Any

from terminal.core.money import Money
from terminal.core.reports import DayReport, build_report
from terminal.core.rules import OriginalSale, RefundCheck, RefundProblem, check_refund, check_void
from terminal.errors import StorageError
from terminal.i18n import reason
from terminal.journal import NewTransaction, TxnRow
from terminal.receipts import receipt_lines, report_lines

if TYPE_CHECKING:
    from terminal.operators import PinCheck
    from terminal.service import Service


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


def original_sale(service: Service, row: TxnRow) -> OriginalSale:
    related = service.require_journal().related(row.id)
    refunded = sum(r.amount.minor for r in related if r.kind == "refund" and r.approved)
    voided = any(r.kind == "void" and r.approved for r in related)
    return OriginalSale(kind=row.kind, approved=row.approved, voided=voided, amount=row.amount,
                        refunded=Money(refunded, row.amount.currency), created_at=row.created_at,
                        business_date=row.business_date)


def find_original(service: Service, reference: str) -> TxnRow | None:
    """A sale by its full id or an unambiguous prefix (receipts print the full reference)."""
    journal = service.require_journal()
    row = journal.get(reference.strip())
    if row is not None:
        return row
    matches = [r for r in journal.find(reference) if r.kind in ("sale", "fare")]
    return matches[0] if len(matches) == 1 else None


def _supervisor(service: Service, supervisor_id: str | None, pin: str | None, purpose: str) -> PinCheck | None:
    if not supervisor_id or not pin:
        return None
    return service.operators.check(supervisor_id, pin, now=service.clock(), purpose=purpose,
                                   require_role="supervisor")


def refund(service: Service, reference: str, amount: Money | None, *, operator: str | None,
           supervisor_id: str | None, supervisor_pin: str | None) -> BackOfficeResult:
    original = find_original(service, reference)
    if original is None:
        return BackOfficeResult(False, ("not_found",))
    sale = original_sale(service, original)
    amount = amount if amount is not None else sale.amount - sale.refunded
    # check everything but the PIN first, so a refund that cannot happen costs no PIN attempt
    pre = check_refund(sale, amount, now=service.clock(), window_days=service.config.refunds.window_days,
                       supervisor_verified=True)
    if not pre.allowed:
        return _refused(service, "refund_refused", original, pre, operator)
    supervisor = _supervisor(service, supervisor_id, supervisor_pin, "refund_supervisor")
    check = check_refund(sale, amount, now=service.clock(), window_days=service.config.refunds.window_days,
                         supervisor_verified=bool(supervisor and supervisor.ok))
    if not check.allowed:
        return _refused(service, "refund_refused", original, check, operator, supervisor)
    row = service.require_journal().append(
        NewTransaction(kind="refund", amount=amount, method=original.method, decision="approved",
                       reasons=("refund_approved_by_supervisor",), auth_mode="offline", scheme=original.scheme,
                       card_token=original.card_token, masked_pan=original.masked_pan, reference=original.id,
                       operator=operator, details={"supervisor": supervisor.operator.id if supervisor and
                                                   supervisor.operator else None}),
        now=service.clock(), business_date=service.business_date(),
    )
    return BackOfficeResult(True, (), row, supervisor, check.refundable - amount)


def void_last(service: Service, *, operator: str | None, supervisor_id: str | None,
              supervisor_pin: str | None) -> BackOfficeResult:
    journal = service.require_journal()
    last = journal.last_sale()
    if last is None:
        return BackOfficeResult(False, ("not_found",))
    sale = original_sale(service, last)
    # the newest approved sale: later refunds of other sales do not matter, a later sale does
    newer = [r for r in journal.recent(20) if r.seq > last.seq and r.approved and r.kind in ("sale", "fare")]
    pre = check_void(sale, is_last_sale=not newer, business_date=service.business_date(), supervisor_verified=True)
    if not pre.allowed:
        return _refused(service, "void_refused", last, pre, operator)
    supervisor = _supervisor(service, supervisor_id, supervisor_pin, "void_supervisor")
    check = check_void(sale, is_last_sale=not newer, business_date=service.business_date(),
                       supervisor_verified=bool(supervisor and supervisor.ok))
    if not check.allowed:
        return _refused(service, "void_refused", last, check, operator, supervisor)
    row = journal.append(
        NewTransaction(kind="void", amount=last.amount, method=last.method, decision="approved",
                       reasons=("void_approved_by_supervisor",), auth_mode="offline", scheme=last.scheme,
                       card_token=last.card_token, masked_pan=last.masked_pan, reference=last.id,
                       operator=operator, details={"supervisor": supervisor.operator.id if supervisor and
                                                   supervisor.operator else None}),
        now=service.clock(), business_date=service.business_date(),
    )
    return BackOfficeResult(True, (), row, supervisor)


def _refused(service: Service, event: str, original: TxnRow, check: RefundCheck, operator: str | None,
             supervisor: PinCheck | None = None) -> BackOfficeResult:
    problems = tuple(
        f"supervisor_{supervisor.reason}"
        if p is RefundProblem.SUPERVISOR_PIN_REQUIRED and supervisor is not None and not supervisor.ok else p.value
        for p in check.problems
    )
    service.audit(event, actor=operator, details={"original": original.id, "problems": list(problems)})
    return BackOfficeResult(False, problems, None, supervisor, check.refundable)


# -- day close -----------------------------------------------------------------------------------


def last_close(service: Service) -> tuple[int, int]:
    """(last closed sequence number, last Z number)."""
    journal = service.require_journal()
    return int(journal.meta("z_last_seq") or 0), int(journal.meta("z_number") or 0)


def day_report(service: Service) -> DayReport:
    """The X-report: everything since the last Z, nothing closed."""
    last_seq, _ = last_close(service)
    rows = [r for r in service.require_journal().rows_after(last_seq)]
    return build_report(rows, service.currency.alpha, None)


def close_day(service: Service, *, operator: str | None) -> tuple[DayReport, list[Path]]:
    """Close the batch: Z-report of everything since the last Z, written as JSON and text."""
    journal = service.require_journal()
    last_seq, z_number = last_close(service)
    rows = list(journal.rows_after(last_seq))
    report = build_report(rows, service.currency.alpha, z_number + 1)
    now = service.clock()
    folder = service.data_dir / "reports"
    stem = f"Z{report.z_number:04d}-{service.business_date(now).isoformat()}"
    data = {**report.to_dict(), "terminal_id": service.config.terminal.id, "closed_at": now.isoformat(),
            "closed_by": operator}
    text = "\n".join(report_lines(report, service.config)) + "\n"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        paths = [_write(folder / f"{stem}.json", json.dumps(data, indent=2, ensure_ascii=False) + "\n"),
                 _write(folder / f"{stem}.txt", text)]
    except OSError as exc:
        raise StorageError(f"cannot write the day report to {folder}: {exc.strerror}") from None
    journal.set_meta({"z_last_seq": str(report.last_seq or last_seq), "z_number": str(report.z_number)})
    service.audit("day_closed", actor=operator, details={"z_number": report.z_number, "net": report.net,
                                                         "first_seq": report.first_seq,
                                                         "last_seq": report.last_seq})
    return report, paths


def _write(path: Path, text: str) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_receipt(service: Service, row: TxnRow, locale: str | None = None) -> Path:
    folder = service.data_dir / "receipts"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        return _write(folder / f"{row.id}.txt", "\n".join(receipt_lines(row, service.config, locale)) + "\n")
    except OSError as exc:
        raise StorageError(f"cannot write the receipt to {folder}: {exc.strerror}") from None
