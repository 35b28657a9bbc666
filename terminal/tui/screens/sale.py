"""The sale being put together (`Sale`) and the sale being paid (`Ticket`): plain state the checkout,
the payment and the result screens share."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from terminal.core.basket import Basket
from terminal.core.money import Money
from terminal.journal import TxnRow


@dataclass
class Sale:
    """What the cashier has put together on the checkout screen."""

    basket: Basket
    note: str = ""


@dataclass
class Ticket:
    """One sale being paid, in one payment or in several (split tender: part card, part wallet code,
    part cash). Every payment's row says which sale it is a part of (`details["sale"]`: its id, the
    sale's total and the part's number) when the sale is paid in parts; the items and the tax go with
    the payments until one of them is approved."""

    sale: Sale
    total: Money
    details: dict[str, Any]  # the items, the tax, the note (journaled with the payment)
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    paid: list[TxnRow] = field(default_factory=list)
    split: bool = False  # paid in parts (the first part was less than the total)

    @property
    def paid_amount(self) -> Money:
        return Money(sum(r.amount.minor for r in self.paid), self.total.currency)

    @property
    def remaining(self) -> Money:
        return self.total - self.paid_amount

    @property
    def settled(self) -> bool:
        return not self.remaining.is_positive

    def part_details(self, amount: Money) -> dict[str, Any]:
        """What the payment of `amount` (the whole rest, or a part of it) journals with its row."""
        out: dict[str, Any] = {} if self.paid else dict(self.details)
        if self.split or self.paid or amount != self.remaining:
            self.split = True
            out["sale"] = {"id": self.id, "total": self.total.minor, "part": len(self.paid) + 1}
        return out

    def record(self, row: TxnRow) -> None:
        """A payment of this sale was approved."""
        if row.approved and all(r.id != row.id for r in self.paid):
            self.paid.append(row)
