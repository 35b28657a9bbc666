"""Refunds, voids, day close and receipts: the cashier's back-office operations over the journal.

Refunds and voids need a supervisor PIN, checked (and counted towards lockout) by `Operators`; the
pure checks are `terminal.core.rules.check_refund` / `check_void`. An allowed refund or void is a
signed journal row (kind refund/void, `reference` = the original sale) that syncs like any other;
the backend returns the money to the card or wallet of the original payment, so the card does not
need to be present. A refused attempt stores no transaction, only an audit entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from terminal.core.basket import taxes_of
from terminal.core.money import Money
from terminal.core.rules import OriginalSale, RefundCheck, RefundProblem, check_refund, check_void
from terminal.dayclose import DayClose
from terminal.errors import StorageError, WalletposError
from terminal.i18n import reason
from terminal.journal import NewTransaction, TxnRow
from terminal.operators import PinCheck
from terminal.receipts import receipt_lines

SALE_KINDS = ("sale", "fare")
SALE_PARTS_WINDOW = 200  # rows before and after a part of a split sale where its other parts are
_DATED_REF = re.compile(r"\s*(\d{4}-\d{2}-\d{2}|\d{8})\s*[/ #-]\s*#?(\d{1,6})\s*")


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


@dataclass(frozen=True)
class Lookup:
    """What a typed reference finds: one row, or several (`candidates`: the reference is ambiguous,
    e.g. the same short reference on several days), or nothing."""

    row: TxnRow | None
    candidates: tuple[TxnRow, ...] = ()

    @property
    def problem(self) -> str | None:
        if self.row is not None:
            return None
        return "ambiguous_reference" if len(self.candidates) > 1 else "not_found"


@dataclass(frozen=True)
class SaleMark:
    """What became of a sale since: voided, or refunded (how much in all)."""

    voided: bool = False
    refunded: int = 0  # minor units


def parse_reference(text: str) -> tuple[date | None, str] | None:
    """A short reference as typed: '0042', '#42', '2026-11-20/0042', '20261120-0042' -> (date or None,
    '0042'); None when `text` is not a short reference."""
    text = text.strip()
    m = _DATED_REF.fullmatch(text)
    if m:
        day = m.group(1)
        try:
            when = date.fromisoformat(day if "-" in day else f"{day[:4]}-{day[4:6]}-{day[6:]}")
        except ValueError:
            return None
        return when, m.group(2).zfill(4)
    bare = text.lstrip("#")
    if bare.isdigit() and bare.isascii() and 1 <= len(bare) <= 6:
        return None, bare.zfill(4)
    return None


class BackOffice(DayClose):
    """Refunds, voids, day close and receipts over the payments' journal and the operators' PINs."""


    def original_sale(self, row: TxnRow) -> OriginalSale:
        related = self.payments.require_journal().txns.related(row.id)
        refunded = sum(r.amount.minor for r in related if r.kind == "refund" and r.approved)
        voided = any(r.kind == "void" and r.approved for r in related)
        return OriginalSale(kind=row.kind, approved=row.approved, voided=voided, amount=row.amount,
                            refunded=Money(refunded, row.amount.currency), created_at=row.created_at,
                            business_date=row.business_date)

    def lookup(self, reference: str, *, sales_only: bool = True) -> Lookup:
        """The row a typed reference names: its short reference ('0042': today's first, else the one
        day that has it; '2026-11-20/0042' for another day), its full id, or the start or end of its
        id. Several rows that fit (and none of today's) make the reference ambiguous."""
        journal = self.payments.require_journal()
        text = reference.strip()
        if not text:
            return Lookup(None)
        kinds = SALE_KINDS if sales_only else ("sale", "fare", "refund", "void")
        short = parse_reference(text)
        if short is not None:
            day, ref = short
            rows = [r for r in journal.txns.by_short_ref(ref, day) if r.kind in kinds]
            if day is None:
                today = [r for r in rows if r.business_date == self.payments.business_date()]
                rows = today or rows
            return Lookup(rows[0] if len(rows) == 1 else None, tuple(rows))
        row = journal.txns.get(text)
        if row is not None:
            return Lookup(row if row.kind in kinds else None, (row,))
        matches = [r for r in journal.txns.find(text) if r.kind in kinds]
        return Lookup(matches[0] if len(matches) == 1 else None, tuple(matches))

    def find_original(self, reference: str) -> TxnRow | None:
        """A sale by its reference (see `lookup`), when the reference names exactly one."""
        return self.lookup(reference).row

    def marks(self, rows: list[TxnRow]) -> dict[str, SaleMark]:
        """For the approved sales among `rows`: voided, or refunded how much (an index look-up each)."""
        journal = self.payments.require_journal()
        out: dict[str, SaleMark] = {}
        for row in rows:
            if row.kind not in SALE_KINDS or not row.approved:
                continue
            related = journal.txns.related(row.id)
            voided = any(r.kind == "void" and r.approved for r in related)
            refunded = sum(r.amount.minor for r in related if r.kind == "refund" and r.approved)
            if voided or refunded:
                out[row.id] = SaleMark(voided, refunded)
        return out

    # -- cash ---------------------------------------------------------------------------------------

    def pay_cash(self, amount: Money, tendered: Money, *, operator: str | None,
                 details: Mapping[str, Any] | None = None) -> TxnRow:
        """A cash tender: `tendered` handed over for `amount`, the change given back; journaled (and
        signed) like every payment, method `cash`, so the drawer is counted in the day reports.
        Nothing for the rules to decide: cash is not a card, a code or a backend's answer."""
        if tendered.currency != amount.currency or tendered < amount or not amount.is_positive:
            raise WalletposError(f"cash: {tendered} does not pay {amount}", title="Cash")
        change = tendered - amount
        return self.payments.require_journal().txns.append(
            NewTransaction(kind="sale", amount=amount, method="cash", decision="approved", reasons=("cash_tendered",),
                           auth_mode="none", operator=operator,
                           details={**(details or {}), "tender": {"cash": tendered.minor, "change": change.minor}}),
            now=self.payments.clock(), business_date=self.payments.business_date())

    def _supervisor(self, supervisor_id: str | None, pin: str | None, purpose: str) -> PinCheck | None:
        if not supervisor_id or not pin:
            return None
        return self.operators.check(supervisor_id, pin, now=self.payments.clock(), purpose=purpose,
                                       require_role="supervisor")

    def refund_check(self, reference: str, amount: Money | None) -> BackOfficeResult:
        """Everything a refund checks but the supervisor's PIN (asked only when this is ok); the row
        is the sale, `refundable` what is left of it."""
        found = self.lookup(reference)
        if found.row is None:
            return BackOfficeResult(False, (found.problem or "not_found",))
        sale = self.original_sale(found.row)
        amount = amount if amount is not None else sale.amount - sale.refunded
        window = self.payments.config.refunds.window_days
        check = check_refund(sale, amount, now=self.payments.clock(), window_days=window, supervisor_verified=True)
        return BackOfficeResult(check.allowed, tuple(p.value for p in check.problems), found.row,
                                refundable=check.refundable)

    def void_check(self) -> BackOfficeResult:
        """Everything a void of the last sale checks but the supervisor's PIN; the row is that sale."""
        journal = self.payments.require_journal()
        last = journal.txns.last_sale()
        if last is None:
            return BackOfficeResult(False, ("not_found",))
        check = self._void_rules(last, supervisor_verified=True)
        return BackOfficeResult(check.allowed, tuple(p.value for p in check.problems), last)

    def _void_rules(self, last: TxnRow, *, supervisor_verified: bool) -> RefundCheck:
        journal = self.payments.require_journal()
        sale = self.original_sale(last)
        # the newest approved sale: later refunds of other sales do not matter, a later sale does
        newer = [r for r in journal.txns.recent(20) if r.seq > last.seq and r.approved and r.kind in SALE_KINDS]
        return check_void(sale, is_last_sale=not newer, business_date=self.payments.business_date(),
                          supervisor_verified=supervisor_verified)

    def refund(self, reference: str, amount: Money | None, *, operator: str | None,
               supervisor_id: str | None, supervisor_pin: str | None) -> BackOfficeResult:
        found = self.lookup(reference)
        original = found.row
        if original is None:
            return BackOfficeResult(False, (found.problem or "not_found",))
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
                                                       supervisor.operator else None,
                                                       **_tax_share(original, amount)}),
            now=self.payments.clock(), business_date=self.payments.business_date(),
        )
        return BackOfficeResult(True, (), row, supervisor, check.refundable - amount)

    def void_last(self, *, operator: str | None, supervisor_id: str | None,
                  supervisor_pin: str | None) -> BackOfficeResult:
        journal = self.payments.require_journal()
        last = journal.txns.last_sale()
        if last is None:
            return BackOfficeResult(False, ("not_found",))
        pre = self._void_rules(last, supervisor_verified=True)
        if not pre.allowed:
            return self._refused("void_refused", last, pre, operator)
        supervisor = self._supervisor(supervisor_id, supervisor_pin, "void_supervisor")
        check = self._void_rules(last, supervisor_verified=bool(supervisor and supervisor.ok))
        if not check.allowed:
            return self._refused("void_refused", last, check, operator, supervisor)
        row = journal.txns.append(
            NewTransaction(kind="void", amount=last.amount, method=last.method, decision="approved",
                           reasons=("void_approved_by_supervisor",), auth_mode="offline", scheme=last.scheme,
                           card_token=last.card_token, masked_pan=last.masked_pan, reference=last.id,
                           operator=operator, details={"supervisor": supervisor.operator.id if supervisor and
                                                       supervisor.operator else None,
                                                       **_tax_share(last, last.amount)}),
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


    def unsynced(self) -> tuple[int, int]:
        """(rows, amount in minor units) not yet accepted by the backend: what a day close says."""
        journal = self.payments.require_journal()
        summary = journal.sync.queue_summary()
        pending = int(summary["pending"])
        return pending, self.day_report().pending_sync.amount if pending else 0


    def save_receipt(self, row: TxnRow, locale: str | None = None) -> Path:
        folder = self.payments.data_dir / "receipts"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            text = "\n".join(receipt_lines(row, self.payments.config, locale, self.sale_parts(row))) + "\n"
            return self._write(folder / f"{row.id}.txt", text)
        except OSError as exc:
            raise StorageError(f"cannot write the receipt to {folder}: {exc.strerror}") from None


    def sale_parts(self, row: TxnRow) -> list[TxnRow]:
        """The payments of a sale paid in parts (split tender), this one among them, by the sale id in
        the rows' details, in order ([] for a sale paid at once). The parts of a sale are paid one after
        the other at one counter: they are looked for among the SALE_PARTS_WINDOW rows around it."""
        sale_id = sale_id_of(row)
        if not sale_id:
            return []
        window = self.payments.require_journal().txns.rows_after(max(0, row.seq - SALE_PARTS_WINDOW),
                                                                 until=row.seq + SALE_PARTS_WINDOW)
        return [r for r in window if sale_id_of(r) == sale_id]


def sale_id_of(row: TxnRow) -> str | None:
    """The sale a payment is a part of (split tender), from its details."""
    sale = row.details.get("sale") if isinstance(row.details, Mapping) else None
    value = sale.get("id") if isinstance(sale, Mapping) else None
    return value if isinstance(value, str) else None


def _tax_share(original: TxnRow, amount: Money) -> dict[str, Any]:
    """The tax a refund or void of `amount` of `original` takes back: all of it for the whole amount,
    else each rate's share, rounded half up (details of the refund or void row)."""
    taxes = taxes_of(original.details)
    if not taxes or not original.amount.minor:
        return {}
    whole, part = original.amount.minor, amount.minor

    def share(value: int) -> int:
        return value if part == whole else (value * part * 2 + whole) // (whole * 2)

    return {"tax": [{"rate": t.rate, "gross": share(t.gross), "tax": share(t.tax)} for t in taxes]}
