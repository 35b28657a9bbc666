"""Types every payment flow shares: who pays (`CardFacts`), what came of it (`PaymentResult`), and the
backend as the payment path sees it (`OnlineAuthorizer`, `OnlineAnswer`).

This module sits below the service and below the payment modules (cards, codes, the checkout, the
back office), so all of them can use these types without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from terminal.core.money import Money
from terminal.core.rules import PaymentRequest, RuleOutcome
from terminal.journal import TxnRow

STORAGE_FAILURE = "storage_failure"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class OnlineAnswer:
    approved: bool
    reason: str | None = None
    auth_code: str | None = None


class OnlineAuthorizer(Protocol):
    """The backend, as the payment flow sees it (implemented by `terminal.backend.BackendAuthorizer`)."""

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


@dataclass(frozen=True, slots=True)
class FareTap:
    """One tap at a transit gate, as the fare path needs it: where (gate, station, the gate's
    direction: entry, exit or both), with what (card or signed wallet code) and what the card said."""

    gate_id: str
    station: str
    direction: str  # the gate's: entry | exit | both
    method: str = "card"  # card | wallet_signed
    concession: str | None = None  # the wallet's tier, when it says one
    expiry: date | None = None
    card_declined: bool = False


@dataclass(frozen=True, slots=True)
class FareResult:
    """What came of a tap at a gate. `outcome`: go, stop, same_tap (the last tap read again: nothing
    journaled, the gate not opened again) or storage (cannot record: stop). `sign` is what the
    passenger reads: go, card_not_accepted, tap_only_once, see_staff."""

    outcome: str
    direction: str  # entry | exit (resolved)
    reasons: tuple[str, ...]
    sign: str
    charged: Money | None
    day_total: Money | None
    row: TxnRow | None
    breakdown: tuple[Mapping[str, Any], ...] = ()
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    station: str = ""
    gate_id: str = ""

    @property
    def opens_gate(self) -> bool:
        return self.outcome == "go"

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome, "direction": self.direction, "reasons": list(self.reasons), "sign": self.sign,
            "charged": self.charged.minor if self.charged is not None else None,
            "day_total": self.day_total.minor if self.day_total is not None else None,
            "currency": self.charged.currency.alpha if self.charged is not None else None,
            "transaction_id": self.row.id if self.row else None, "seq": self.row.seq if self.row else None,
            "masked_pan": self.row.masked_pan if self.row else None, "station": self.station, "gate": self.gate_id,
            "breakdown": [dict(b) for b in self.breakdown],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }
