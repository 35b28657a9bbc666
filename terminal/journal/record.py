"""The journal's signed record, pure: canonical bytes, hashes, the row types.

Signed record canonical form: the fields of `SIGNED_FIELDS` as one JSON object, keys sorted,
separators ("," ":"), UTF-8, no floats; `row_hash` = SHA-256 of those bytes (hex); `signature` =
Ed25519 over the 32 hash bytes (hex). The first row's `prev_hash` is 64 zeros.

Sealed card data (the card's number and expiry encrypted to the backend, hundreds of bytes) is signed
through its SHA-256 (`sealed_card_sha256`), not itself: once the backend has accepted a row, the
terminal drops the blob and the row still verifies.

The sandbox backend verifies what terminals send with these same functions.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from terminal.core.money import Money

GENESIS_HASH = "0" * 64
KINDS = ("sale", "refund", "void", "fare")
DECISIONS = ("approved", "declined")
AUTH_MODES = ("offline", "online", "offline_fallback", "none")
SYNC_STATES = ("pending", "accepted", "duplicate", "declined_after_offline", "rejected", "resolved")

SIGNED_FIELDS: tuple[str, ...] = (
    "seq", "id", "terminal_id", "created_at", "business_date", "kind", "amount", "currency",
    "method", "scheme", "card_token", "masked_pan", "decision", "reasons", "auth_mode",
    "reference", "operator", "sealed_card_sha256", "details", "prev_hash",
)
AUDIT_SIGNED_FIELDS: tuple[str, ...] = ("seq", "terminal_id", "at", "event", "actor", "details", "prev_hash")


def utc_text(moment: datetime) -> str:
    """UTC timestamp as stored: 2026-11-23T07:33:00.123456Z."""
    if moment.tzinfo is not UTC:
        if moment.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        moment = moment.astimezone(UTC)
    # %-formatting of the fields: what isoformat gives, in two thirds of its time right after an fsync
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (measured faster here)
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, moment.microsecond)


def parse_utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return moment.astimezone(UTC)


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """Canonical JSON: keys sorted, no spaces, UTF-8 text (one encoder, built once)."""
    return _ENCODER.encode(value)


json_str = json.encoder.encode_basestring  # the string encoder _ENCODER uses (ensure_ascii=False)


def canonical_txn_parts(
    *, amount: int, auth_mode: str, business_date: str, card_token: str | None, created_at: str,
    currency: str, decision: str, details_json: str, id: str, kind: str, masked_pan: str | None,
    method: str, operator: str | None, reasons_json: str, reference: str | None, scheme: str | None,
    sealed_card_sha256: str | None, terminal_id: str,
) -> tuple[str, str, str]:
    """The canonical JSON of a transaction record (what `canonical_json(record)` gives, keys in sorted order)
    in three pieces around the two values only known inside the write transaction:
    `head + prev_hash + middle + seq + tail`. tests/unit/test_journal_format.py checks it byte for
    byte against the generic encoder on generated records."""
    # optional values inline ("null" or the JSON string): this runs on every append
    head = (
        f'{{"amount":{int(amount)},"auth_mode":{json_str(auth_mode)},"business_date":{json_str(business_date)},'
        f'"card_token":{"null" if card_token is None else json_str(card_token)},"created_at":{json_str(created_at)},'
        f'"currency":{json_str(currency)},"decision":{json_str(decision)},"details":{details_json},"id":{json_str(id)},'
        f'"kind":{json_str(kind)},"masked_pan":{"null" if masked_pan is None else json_str(masked_pan)},'
        f'"method":{json_str(method)},"operator":{"null" if operator is None else json_str(operator)},"prev_hash":'
    )
    middle = (
        f',"reasons":{reasons_json},"reference":{"null" if reference is None else json_str(reference)},'
        f'"scheme":{"null" if scheme is None else json_str(scheme)},'
        f'"sealed_card_sha256":{"null" if sealed_card_sha256 is None else json_str(sealed_card_sha256)},"seq":'
    )
    return head, middle, f',"terminal_id":{json_str(terminal_id)}}}'


@functools.lru_cache(maxsize=512)
def reasons_json(reasons: tuple[str, ...]) -> str:
    """Reason lists repeat (a few dozen codes), so their JSON is cached."""
    return canonical_json(list(reasons))


def check_plain(value: Any, where: str) -> None:
    """Signed details hold only str/int/bool/None, lists and string-keyed dicts (no floats)."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_plain(item, where)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be strings")
            check_plain(v, where)
        return
    raise ValueError(f"{where}: {type(value).__name__} values cannot be journaled (no floats)")


def sealed_digest(sealed_card: str | None) -> bytes | None:
    """The SHA-256 of sealed card data (its UTF-8 text), what the signed record carries."""
    return None if sealed_card is None else hashlib.sha256(sealed_card.encode("utf-8")).digest()


def canonical_bytes(record: Mapping[str, Any], names: Sequence[str] = SIGNED_FIELDS) -> bytes:
    return canonical_json({k: record[k] for k in names}).encode("utf-8")


def record_hash(record: Mapping[str, Any], names: Sequence[str] = SIGNED_FIELDS) -> str:
    return hashlib.sha256(canonical_bytes(record, names)).hexdigest()


@dataclass(frozen=True, slots=True)
class NewTransaction:
    """What a payment flow hands to the journal: the final outcome of one attempt."""

    kind: str
    amount: Money
    method: str
    decision: str
    reasons: tuple[str, ...]
    auth_mode: str
    scheme: str | None = None
    card_token: str | None = None
    masked_pan: str | None = None
    reference: str | None = None
    operator: str | None = None
    sealed_card: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True, slots=True)
class CodeClaim:
    """A single-use wallet payment code (wallet, counter) claimed by the transaction that uses it."""

    wallet_id: str
    counter: int
    key_id: str


class TxnRow(NamedTuple):
    """One stored transaction (immutable). A named tuple rather than a frozen dataclass: `append`
    returns one on every approval, and a frozen dataclass of 26 fields costs several microseconds
    to build (one `object.__setattr__` per field) where a tuple costs a fraction of one."""

    seq: int
    id: str
    terminal_id: str
    created_at: datetime
    business_date: date
    kind: str
    amount: Money
    method: str
    scheme: str | None
    card_token: str | None
    masked_pan: str | None
    decision: str
    reasons: tuple[str, ...]
    auth_mode: str
    reference: str | None
    operator: str | None
    sealed_card: str | None  # None once the backend has accepted the row (its digest stays signed)
    details: Mapping[str, Any]
    prev_hash: str
    row_hash: str
    signature: str | None  # None until signed (shortly after the append, off the payment's path)
    sync_state: str
    sync_attempts: int
    sync_error: str | None
    sync_reason: str | None
    synced_at: datetime | None
    short_ref: str | None = None  # the human reference: the row's number within its business day
    sealed_card_sha256: str | None = None

    @property
    def approved(self) -> bool:
        return self.decision == "approved"

    @property
    def offline(self) -> bool:
        return self.auth_mode in ("offline", "offline_fallback")

    def signed_record(self) -> dict[str, Any]:
        """The record exactly as signed: what the backend receives and can verify."""
        return {
            "seq": self.seq,
            "id": self.id,
            "terminal_id": self.terminal_id,
            "created_at": utc_text(self.created_at),
            "business_date": self.business_date.isoformat(),
            "kind": self.kind,
            "amount": self.amount.minor,
            "currency": self.amount.currency.alpha,
            "method": self.method,
            "scheme": self.scheme,
            "card_token": self.card_token,
            "masked_pan": self.masked_pan,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "auth_mode": self.auth_mode,
            "reference": self.reference,
            "operator": self.operator,
            "sealed_card_sha256": self.sealed_card_sha256,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
        }

    def upload_record(self) -> dict[str, Any]:
        """What the backend receives: the signed record and the sealed card data it vouches for."""
        return {**self.signed_record(), "sealed_card": self.sealed_card}

    def to_dict(self) -> dict[str, Any]:
        out = self.upload_record()
        out.update(
            row_hash=self.row_hash,
            signature=self.signature,
            sync_state=self.sync_state,
            sync_attempts=self.sync_attempts,
            sync_error=self.sync_error,
            sync_reason=self.sync_reason,
            synced_at=utc_text(self.synced_at) if self.synced_at else None,
            short_ref=self.short_ref,
        )
        return out


@dataclass(frozen=True, slots=True)
class PayerTotals:
    amount_today: int  # minor units approved today (all auth modes), sales and fares
    offline_amount_today: int
    offline_count_today: int


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `journal verify` found: ok, how much it checked, the first problem (table and sequence
    number) and every problem it found, each in words."""

    ok: bool
    rows_checked: int
    audit_rows_checked: int
    first_bad_seq: int | None = None
    table: str | None = None
    problem: str | None = None
    problems: tuple[str, ...] = ()
    checks: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows_checked": self.rows_checked,
            "audit_rows_checked": self.audit_rows_checked,
            "first_bad_seq": self.first_bad_seq,
            "table": self.table,
            "problem": self.problem,
            "problems": list(self.problems),
            "checks": dict(self.checks),
            "seconds": round(self.seconds, 3),
        }


def head_ack_digest(terminal_id: str, txn_seq: int, txn_hash: str, terminal_key: str, at: str) -> bytes:
    """What the backend signs when it acknowledges a terminal's journal head: it holds every row up to
    `txn_seq`, the last of them with hash `txn_hash`, from the terminal enrolled with `terminal_key`
    (hex public key). The terminal keeps the newest acknowledgement; a journal that later lacks that
    row, or holds another one there, or is signed by another key, was lost, forked or rewritten."""
    text = json.dumps({"terminal_id": terminal_id, "txn_seq": txn_seq, "txn_hash": txn_hash,
                       "terminal_key": terminal_key, "at": at}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(b"walletpos head ack v1\x00" + text.encode()).digest()

