"""Day close (Z-report) and interim (X-report) totals: pure, from journal rows to numbers.

A Z-report covers every transaction since the previous Z (by journal sequence), like a POS batch:
closing twice in one day gives Z n and Z n+1; an X-report shows the same totals without closing.
All amounts are integer minor units of the report currency.

The report is built one row at a time (`DayReport.add`, `build_report` over any iterable), or from
the batch as the journal counts it with SQL (`BatchTotals`: groups of alike rows, tax per rate, the
first and last row; `report_of_totals`), which is what the terminal does: a day of 20,000 taps, or a
terminal not closed for weeks, is reported without reading its rows one by one. Both give the same
report.
Besides the batch totals it keeps the totals of each cashier, of each shift (the batch is cut into
shifts where a supervisor ended one: `shift_ends`, the last sequence number of each ended shift),
the tax included per rate (from the items in the rows), and the cash taken (cash is in the drawer,
so it is not part of what the backend settles).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol, TypedDict

from terminal.core.basket import taxes_of
from terminal.core.money import Money

CASH = "cash"


class ReportRow(Protocol):
    """The fields a report reads from a journal row (`terminal.journal.TxnRow` has them)."""

    @property
    def seq(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def scheme(self) -> str | None: ...

    @property
    def decision(self) -> str: ...

    @property
    def auth_mode(self) -> str: ...

    @property
    def sync_state(self) -> str: ...

    @property
    def amount(self) -> Money: ...

    @property
    def operator(self) -> str | None: ...

    @property
    def details(self) -> Mapping[str, Any]: ...

    @property
    def business_date(self) -> date: ...

    @property
    def created_at(self) -> datetime: ...


class TotalsDict(TypedDict):
    count: int
    amount: int


class TaxDict(TypedDict):
    rate: int
    gross: int
    tax: int


class PartDict(TypedDict):
    """The totals of one cashier or one shift."""

    sales: TotalsDict
    refunds: TotalsDict
    voids: TotalsDict
    declined: TotalsDict
    cash: int
    net: int


class ShiftDict(PartDict):
    shift: int
    first_seq: int | None
    last_seq: int | None


class ReportDict(TypedDict):
    """`DayReport.to_dict()`: every total of the report, amounts in minor units."""

    report: Literal["Z", "X"]
    z_number: int | None
    currency: str
    first_seq: int | None
    last_seq: int | None
    first_business_date: str | None
    last_business_date: str | None
    first_at: str | None
    last_at: str | None
    sales: TotalsDict
    by_method: dict[str, TotalsDict]
    by_scheme: dict[str, TotalsDict]
    offline_approved: TotalsDict
    online_approved: TotalsDict
    declined: TotalsDict
    declined_after_offline: TotalsDict
    pending_sync: TotalsDict
    refunds: TotalsDict
    voids: TotalsDict
    tax: list[TaxDict]
    tax_total: int
    cash_in_drawer: int
    by_cashier: dict[str, PartDict]
    shifts: list[ShiftDict]
    net: int
    expected_settlement: int


@dataclass(frozen=True)
class RowGroup:
    """Rows alike in everything a report tells apart, counted together: one journal row, or one line
    of the journal's GROUP BY over a batch (`terminal.journal.txns.Transactions.batch_totals`)."""

    operator: str | None
    shift: int  # index of the shift within the batch (0: the first)
    kind: str
    method: str
    scheme: str | None
    decision: str
    auth_mode: str
    sync_state: str
    count: int
    amount: int  # minor units, all the rows together
    first_seq: int
    last_seq: int

    @classmethod
    def of(cls, row: ReportRow, shift: int = 0) -> RowGroup:
        return cls(row.operator, shift, row.kind, row.method, row.scheme, row.decision, row.auth_mode,
                   row.sync_state, 1, row.amount.minor, row.seq, row.seq)


@dataclass(frozen=True)
class RowMark:
    """The first or the last row of a batch: its sequence number, business day and time."""

    seq: int
    business_date: date
    created_at: datetime


@dataclass(frozen=True)
class BatchTotals:
    """A batch of journal rows as the journal counts it (SQL aggregation, nothing held per row):
    the groups of alike rows, the tax per rate (rate, gross, tax; refunds and voids already taken
    off), and the batch's first and last row."""

    groups: tuple[RowGroup, ...] = ()
    taxes: tuple[tuple[int, int, int], ...] = ()
    first: RowMark | None = None
    last: RowMark | None = None


@dataclass
class Totals:
    count: int = 0
    amount: int = 0

    def add(self, minor: int, count: int = 1) -> None:
        """Count `count` rows of `minor` minor units in all."""
        self.count += count
        self.amount += minor

    def to_dict(self) -> TotalsDict:
        return {"count": self.count, "amount": self.amount}


@dataclass
class PartTotals:
    """The totals of one cashier or one shift: sales, refunds, voids, declines, cash."""

    sales: Totals = field(default_factory=Totals)
    refunds: Totals = field(default_factory=Totals)
    voids: Totals = field(default_factory=Totals)
    declined: Totals = field(default_factory=Totals)
    cash: int = 0  # cash sales less cash refunds and voids
    first_seq: int | None = None
    last_seq: int | None = None

    @property
    def net(self) -> int:
        return self.sales.amount - self.refunds.amount - self.voids.amount

    def add(self, row: ReportRow) -> None:
        self.add_group(RowGroup.of(row))

    def add_group(self, group: RowGroup) -> None:
        """Count a group of alike rows (one row, or a line of the journal's GROUP BY)."""
        self.first_seq = group.first_seq if self.first_seq is None else min(self.first_seq, group.first_seq)
        self.last_seq = group.last_seq if self.last_seq is None else max(self.last_seq, group.last_seq)
        minor, count = group.amount, group.count
        if group.decision != "approved":
            self.declined.add(minor, count)
            return
        sign = 1
        if group.kind == "refund":
            self.refunds.add(minor, count)
            sign = -1
        elif group.kind == "void":
            self.voids.add(minor, count)
            sign = -1
        else:
            self.sales.add(minor, count)
        if group.method == CASH:
            self.cash += sign * minor

    def to_dict(self) -> PartDict:
        return {"sales": self.sales.to_dict(), "refunds": self.refunds.to_dict(), "voids": self.voids.to_dict(),
                "declined": self.declined.to_dict(), "cash": self.cash, "net": self.net}


@dataclass
class TaxTotals:
    gross: int = 0
    tax: int = 0


def _tax_of(row: ReportRow) -> list[tuple[int, int, int]]:
    """(rate, gross, tax) of a row's items; for a refund or void, what it takes back (a void takes
    the sale's tax back whole, a partial refund its share)."""
    return [(t.rate, t.gross, t.tax) for t in taxes_of(row.details)]


@dataclass
class DayReport:
    currency: str
    z_number: int | None  # None for an X-report (interim, nothing closed)
    shift_ends: Sequence[int] = ()  # last sequence number of each ended shift of the batch, in order
    first_seq: int | None = None
    last_seq: int | None = None
    first_business_date: date | None = None
    last_business_date: date | None = None
    first_at: datetime | None = None
    last_at: datetime | None = None
    sales: Totals = field(default_factory=Totals)
    by_method: dict[str, Totals] = field(default_factory=dict)
    by_scheme: dict[str, Totals] = field(default_factory=dict)
    offline_approved: Totals = field(default_factory=Totals)
    online_approved: Totals = field(default_factory=Totals)
    declined: Totals = field(default_factory=Totals)
    declined_after_offline: Totals = field(default_factory=Totals)
    pending_sync: Totals = field(default_factory=Totals)
    refunds: Totals = field(default_factory=Totals)
    voids: Totals = field(default_factory=Totals)
    tax: dict[int, TaxTotals] = field(default_factory=dict)
    by_cashier: dict[str, PartTotals] = field(default_factory=dict)
    shifts: list[PartTotals] = field(default_factory=list)

    @property
    def net(self) -> int:
        """Sales less refunds and voids."""
        return self.sales.amount - self.refunds.amount - self.voids.amount

    @property
    def cash_in_drawer(self) -> int:
        """Cash sales less cash given back (refunds and voids of cash sales)."""
        return sum(part.cash for part in self.by_cashier.values())

    @property
    def expected_settlement(self) -> int:
        """What the merchant can expect from the backend: net less cash (in the drawer) and less
        declines after offline approval."""
        return self.net - self.cash_in_drawer - self.declined_after_offline.amount

    @property
    def tax_total(self) -> int:
        return sum(t.tax for t in self.tax.values())

    def add(self, row: ReportRow) -> None:
        """Count one journal row (rows come in sequence order)."""
        self.mark(RowMark(row.seq, row.business_date, row.created_at))
        shift = sum(1 for end in self.shift_ends if end < row.seq)
        self.add_group(RowGroup.of(row, shift))
        if row.decision != "approved":
            return
        sign = -1 if row.kind in ("refund", "void") else 1
        for rate, gross, tax in _tax_of(row):
            self.add_tax(rate, sign * gross, sign * tax)

    def mark(self, row: RowMark) -> None:
        """A row of the batch: the first one seen and the last one are the report's bounds."""
        if self.first_seq is None or row.seq < self.first_seq:
            self.first_seq, self.first_business_date, self.first_at = row.seq, row.business_date, row.created_at
        if self.last_seq is None or row.seq >= self.last_seq:
            self.last_seq, self.last_business_date, self.last_at = row.seq, row.business_date, row.created_at

    def add_tax(self, rate: int, gross: int, tax: int) -> None:
        """Tax included at `rate` (negative: taken back by refunds and voids)."""
        totals = self.tax.setdefault(rate, TaxTotals())
        totals.gross += gross
        totals.tax += tax

    def add_group(self, group: RowGroup) -> None:
        """Count a group of alike rows in every total but the bounds and the tax (`mark`, `add_tax`)."""
        self.by_cashier.setdefault(group.operator or "-", PartTotals()).add_group(group)
        while len(self.shifts) <= group.shift:
            self.shifts.append(PartTotals())
        self.shifts[group.shift].add_group(group)
        minor, count = group.amount, group.count
        if group.decision != "approved":
            self.declined.add(minor, count)
            return
        if group.sync_state == "pending":
            self.pending_sync.add(minor, count)
        if group.kind in ("refund", "void"):
            (self.refunds if group.kind == "refund" else self.voids).add(minor, count)
            return
        self.sales.add(minor, count)
        self.by_method.setdefault(group.method, Totals()).add(minor, count)
        if group.method != CASH:
            self.by_scheme.setdefault(group.scheme or "-", Totals()).add(minor, count)
        if group.auth_mode in ("offline", "offline_fallback"):
            self.offline_approved.add(minor, count)
        elif group.auth_mode == "online":
            self.online_approved.add(minor, count)
        if group.sync_state == "declined_after_offline":
            self.declined_after_offline.add(minor, count)

    def to_dict(self) -> ReportDict:
        def group(items: Mapping[str, Totals]) -> dict[str, TotalsDict]:
            return {k: v.to_dict() for k, v in sorted(items.items())}

        def when(moment: date | datetime | None) -> str | None:
            return moment.isoformat() if moment is not None else None

        return {
            "report": "Z" if self.z_number is not None else "X",
            "z_number": self.z_number,
            "currency": self.currency,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_business_date": when(self.first_business_date),
            "last_business_date": when(self.last_business_date),
            "first_at": when(self.first_at),
            "last_at": when(self.last_at),
            "sales": self.sales.to_dict(),
            "by_method": group(self.by_method),
            "by_scheme": group(self.by_scheme),
            "offline_approved": self.offline_approved.to_dict(),
            "online_approved": self.online_approved.to_dict(),
            "declined": self.declined.to_dict(),
            "declined_after_offline": self.declined_after_offline.to_dict(),
            "pending_sync": self.pending_sync.to_dict(),
            "refunds": self.refunds.to_dict(),
            "voids": self.voids.to_dict(),
            "tax": [{"rate": rate, "gross": t.gross, "tax": t.tax} for rate, t in sorted(self.tax.items())],
            "tax_total": self.tax_total,
            "cash_in_drawer": self.cash_in_drawer,
            "by_cashier": {k: v.to_dict() for k, v in sorted(self.by_cashier.items())},
            "shifts": [{"shift": i + 1, "first_seq": s.first_seq, "last_seq": s.last_seq, **s.to_dict()}
                       for i, s in enumerate(self.shifts)],
            "net": self.net,
            "expected_settlement": self.expected_settlement,
        }


def build_report(rows: Iterable[ReportRow], currency: str, z_number: int | None,
                 shift_ends: Sequence[int] = ()) -> DayReport:
    """The report of `rows` (in sequence order), read one at a time."""
    report = DayReport(currency=currency, z_number=z_number, shift_ends=tuple(shift_ends))
    for row in rows:
        report.add(row)
    return report


def report_of_totals(totals: BatchTotals, currency: str, z_number: int | None,
                     shift_ends: Sequence[int] = ()) -> DayReport:
    """The report of a batch the journal counted (`BatchTotals`): the same report `build_report`
    makes of the batch's rows, without reading them one by one."""
    report = DayReport(currency=currency, z_number=z_number, shift_ends=tuple(shift_ends))
    for mark in (totals.first, totals.last):
        if mark is not None:
            report.mark(mark)
    for group in totals.groups:
        report.add_group(group)
    for rate, gross, tax in totals.taxes:
        report.add_tax(rate, gross, tax)
    return report
