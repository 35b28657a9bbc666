"""Day close (Z-report) and interim (X-report) totals: pure, from journal rows to numbers.

A Z-report covers every transaction since the previous Z (by journal sequence), like a POS batch:
closing twice in one day gives Z n and Z n+1; an X-report shows the same totals without closing.
All amounts are integer minor units of the report currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict

from terminal.core.money import Money


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


class TotalsDict(TypedDict):
    count: int
    amount: int


class ReportDict(TypedDict):
    """`DayReport.to_dict()`: every total of the report, amounts in minor units."""

    report: Literal["Z", "X"]
    z_number: int | None
    currency: str
    first_seq: int | None
    last_seq: int | None
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
    net: int
    expected_settlement: int


@dataclass
class Totals:
    count: int = 0
    amount: int = 0

    def add(self, minor: int) -> None:
        self.count += 1
        self.amount += minor

    def to_dict(self) -> TotalsDict:
        return {"count": self.count, "amount": self.amount}


@dataclass
class DayReport:
    currency: str
    z_number: int | None  # None for an X-report (interim, nothing closed)
    first_seq: int | None = None
    last_seq: int | None = None
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

    @property
    def net(self) -> int:
        """Sales less refunds and voids."""
        return self.sales.amount - self.refunds.amount - self.voids.amount

    @property
    def expected_settlement(self) -> int:
        """What the merchant can expect from the backend: net less declines after offline approval."""
        return self.net - self.declined_after_offline.amount

    def to_dict(self) -> ReportDict:
        def group(items: Mapping[str, Totals]) -> dict[str, TotalsDict]:
            return {k: v.to_dict() for k, v in sorted(items.items())}

        return {
            "report": "Z" if self.z_number is not None else "X",
            "z_number": self.z_number,
            "currency": self.currency,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
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
            "net": self.net,
            "expected_settlement": self.expected_settlement,
        }


def build_report(rows: Iterable[ReportRow], currency: str, z_number: int | None) -> DayReport:
    report = DayReport(currency=currency, z_number=z_number)
    for row in rows:
        if report.first_seq is None:
            report.first_seq = row.seq
        report.last_seq = row.seq
        minor = row.amount.minor
        if row.decision != "approved":
            report.declined.add(minor)
            continue
        if row.sync_state == "pending":
            report.pending_sync.add(minor)
        if row.kind == "refund":
            report.refunds.add(minor)
            continue
        if row.kind == "void":
            report.voids.add(minor)
            continue
        report.sales.add(minor)
        report.by_method.setdefault(row.method, Totals()).add(minor)
        report.by_scheme.setdefault(row.scheme or "-", Totals()).add(minor)
        if row.auth_mode in ("offline", "offline_fallback"):
            report.offline_approved.add(minor)
        elif row.auth_mode == "online":
            report.online_approved.add(minor)
        if row.sync_state == "declined_after_offline":
            report.declined_after_offline.add(minor)
    return report
