"""The backend's answers, read field by field: anything that does not match the contract
(docs/openapi.yaml) is a `BackendAnswerError`, never taken for an answer."""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from terminal.backend.errors import BackendAnswerError
from terminal.journal import parse_utc, utc_text

ITEM_STATES = ("accepted", "duplicate", "declined_after_offline", "rejected")
HEX64 = re.compile(r"[0-9a-f]{64}")
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
CARD_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
AUTH_CODE = re.compile(r"[A-Z0-9]{6}")


class Answer:
    """Field-by-field reading of a backend answer; every mismatch is a BackendAnswerError."""

    def __init__(self, data: Any, what: builtins.str):
        if not isinstance(data, dict):
            raise BackendAnswerError(f"{what}: expected a JSON object, got {type(data).__name__}")
        self.data, self.what = data, what

    def _get(self, key: builtins.str) -> Any:
        if key not in self.data:
            raise BackendAnswerError(f"{self.what}: field {key} is missing")
        return self.data[key]

    def _bad(self, key: builtins.str, expected: builtins.str) -> BackendAnswerError:
        value = repr(self.data.get(key))[:40]
        return BackendAnswerError(f"{self.what}: field {key} must be {expected}, got {value}")

    def int(self, key: builtins.str, minimum: builtins.int = 0) -> builtins.int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._bad(key, f"a whole number >= {minimum}")
        return value

    def opt_int(self, key: builtins.str, minimum: builtins.int = 0) -> builtins.int | None:
        return None if self._get(key) is None else self.int(key, minimum)

    def bool(self, key: builtins.str) -> builtins.bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def str(self, key: builtins.str, pattern: re.Pattern[builtins.str] | None = None,
            choices: Sequence[builtins.str] | None = None) -> builtins.str:
        value = self._get(key)
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)) \
                or (choices is not None and value not in choices):
            expected = f"one of {', '.join(choices)}" if choices else "text" + (" of the right form" if pattern else "")
            raise self._bad(key, expected)
        return value

    def opt_str(self, key: builtins.str, pattern: re.Pattern[builtins.str] | None = None,
                choices: Sequence[builtins.str] | None = None) -> builtins.str | None:
        return None if self._get(key) is None else self.str(key, pattern, choices)

    def time(self, key: builtins.str) -> datetime:
        text = self.str(key)
        try:
            return parse_utc(text.replace("Z", "+00:00"))
        except ValueError:
            raise self._bad(key, "a UTC timestamp") from None

    def opt_time(self, key: builtins.str) -> datetime | None:
        return None if self._get(key) is None else self.time(key)

    def list(self, key: builtins.str) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return value

    def obj(self, key: builtins.str) -> Answer:
        return Answer(self._get(key), f"{self.what} {key}")


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    server_time: datetime
    clock_skew_ms: int | None
    deny_list_version: int
    config_version: int
    issuer_keys_version: int
    sealing_key_id: str
    support_bundle_requested: bool = False  # support asks for a support bundle (absent: False)


@dataclass(frozen=True, slots=True)
class SupportTicket:
    """The backend's receipt for a support bundle: the ticket id the technician reads out."""

    ticket: str
    received_at: datetime
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ItemResult:
    id: str
    seq: int
    status: str
    reason: str | None
    original_status: str | None


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    results: tuple[ItemResult, ...]
    highest_contiguous_seq: int
    gaps: tuple[tuple[int, int], ...]
    head_ack: dict[str, Any] | None = None  # the backend's signed acknowledgement of the journal head


@dataclass(frozen=True, slots=True)
class AuthorisationAnswer:
    id: str
    approved: bool
    reason: str | None
    auth_code: str | None


@dataclass(frozen=True, slots=True)
class PaymentStatus:
    reference: str
    status: str  # pending | paid | cancelled
    amount: int | None
    currency: str | None
    paid_at: datetime | None
    card_token: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "status": self.status, "amount": self.amount,
                "currency": self.currency, "paid_at": utc_text(self.paid_at) if self.paid_at else None,
                "card_token": self.card_token}


@dataclass(frozen=True, slots=True)
class DenyDelta:
    version: int
    latest_version: int
    has_more: bool
    reset: bool
    added: tuple[tuple[str, str], ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TerminalLimits:
    version: int
    currency: str
    limits: Mapping[str, int | None]


LIMIT_NAMES = ("floor_limit", "cvm_required_limit", "contactless_transaction_limit", "offline_max_payment",
               "card_daily_amount", "card_daily_count", "exposure_cap", "max_hours_since_sync")



__all__ = [
    "AUTH_CODE", "CARD_TOKEN", "HEX64", "ITEM_STATES", "KEY_ID", "LIMIT_NAMES", "Answer", "AuthorisationAnswer",
    "BatchAnswer", "DenyDelta", "HeartbeatAnswer", "ItemResult", "PaymentStatus", "TerminalLimits",
]
