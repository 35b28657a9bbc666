"""The journal: a SQLite file that keeps every transaction, the deny list and an audit log.

- WAL mode with `synchronous=FULL`: `append` returns only after the commit is on disk.
- Every transaction row and every audit row carries a sequence number, the previous row's hash,
  its own hash and an Ed25519 signature by the terminal key, so an edited, deleted or reordered row
  is found by `verify` (and by the backend, which receives the same signed record).
- Sync bookkeeping (state, attempts, backend result) lives in unsigned columns next to the signed
  ones: it changes after the row is written and is not part of what the terminal vouches for.
- No clear card number is ever given to this module: it stores the card token and the masked PAN.

Signed record canonical form: the fields of `SIGNED_FIELDS` as one JSON object, keys sorted,
separators ("," ":"), UTF-8, no floats; `row_hash` = SHA-256 of those bytes (hex); `signature` =
Ed25519 over the 32 hash bytes (hex). The first row's `prev_hash` is 64 zeros.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple

from terminal.core.money import Currency, Money, currency
from terminal.errors import CodeAlreadyUsed, StorageError
from terminal.security import TerminalKeys, verify_signature

GENESIS_HASH = "0" * 64
SCHEMA_VERSION = 1
# A signed seal of both chain heads is written in the append's own transaction every SEAL_EVERY
# transactions, after every audit row, by `seal_head()` (housekeeping) and on close. `verify`
# reports rows missing below the seal, so deleting rows from the end of the journal is caught
# (except rows appended after the latest seal, which the backend's sequence check catches).
SEAL_EVERY = 32

KINDS = ("sale", "refund", "void", "fare")
DECISIONS = ("approved", "declined")
AUTH_MODES = ("offline", "online", "offline_fallback", "none")
SYNC_STATES = ("pending", "accepted", "duplicate", "declined_after_offline", "rejected")

SIGNED_FIELDS: tuple[str, ...] = (
    "seq", "id", "terminal_id", "created_at", "business_date", "kind", "amount", "currency",
    "method", "scheme", "card_token", "masked_pan", "decision", "reasons", "auth_mode",
    "reference", "operator", "sealed_card", "details", "prev_hash",
)
_AUDIT_SIGNED: tuple[str, ...] = ("seq", "terminal_id", "at", "event", "actor", "details", "prev_hash")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS txn (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    terminal_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    business_date TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    method TEXT NOT NULL,
    scheme TEXT,
    card_token TEXT,
    masked_pan TEXT,
    decision TEXT NOT NULL,
    reasons TEXT NOT NULL,
    auth_mode TEXT NOT NULL,
    reference TEXT,
    operator TEXT,
    sealed_card TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL,
    signature TEXT NOT NULL,
    sync_state TEXT NOT NULL DEFAULT 'pending',
    sync_attempts INTEGER NOT NULL DEFAULT 0,
    sync_error TEXT,
    sync_reason TEXT,
    synced_at TEXT
);
CREATE INDEX IF NOT EXISTS txn_payer_day ON txn (card_token, business_date);
CREATE INDEX IF NOT EXISTS txn_reference ON txn (reference) WHERE reference IS NOT NULL;
CREATE INDEX IF NOT EXISTS txn_pending ON txn (seq) WHERE sync_state = 'pending';
CREATE TABLE IF NOT EXISTS deny_list (
    card_token TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    added_at TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS used_codes (
    wallet_id TEXT NOT NULL,
    counter INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    used_at TEXT NOT NULL,
    PRIMARY KEY (wallet_id, counter)
);
CREATE TABLE IF NOT EXISTS issuer_keys (
    key_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    source TEXT NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS operators (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    pin_salt TEXT NOT NULL,
    pin_hash TEXT NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS merchant_codes (
    reference TEXT PRIMARY KEY,
    txn_id TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    operator TEXT,
    shown_at TEXT NOT NULL,
    close_requested INTEGER NOT NULL DEFAULT 0,
    closed_at TEXT,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS merchant_codes_open ON merchant_codes (shown_at) WHERE closed_at IS NULL;
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL,
    signature TEXT NOT NULL
);
"""

_INSERT_TXN = (
    "INSERT INTO txn (seq, id, terminal_id, created_at, business_date, kind, amount, currency, method, scheme, "
    "card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_card, details, prev_hash, "
    "row_hash, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_TXN_COLUMNS = (
    "seq, id, terminal_id, created_at, business_date, kind, amount, currency, method, scheme, "
    "card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_card, details, "
    "prev_hash, row_hash, signature, sync_state, sync_attempts, sync_error, sync_reason, synced_at"
)


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


class _IdTails:
    """The random part of transaction ids, made 256 at a time from one `os.urandom` read and
    already laid out as `7xxx-Vxxx-xxxxxxxxxxxx` (version 7, RFC 9562 variant bits). An append
    then only takes one from the list (atomic under the GIL) and puts the clock in front. A forked
    child starts with an empty list, so a parent and its child never hand out the same tail."""

    BATCH = 256

    def __init__(self) -> None:
        self._tails: list[str] = []
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._tails = []
        self._lock = threading.Lock()

    def take(self) -> str:
        try:
            return self._tails.pop()
        except IndexError:
            with self._lock:
                while True:  # other threads keep popping outside the lock: refill until one is ours
                    try:
                        return self._tails.pop()
                    except IndexError:
                        h = os.urandom(10 * self.BATCH).hex()  # 20 hex digits a tail, 19 of them used
                        self._tails.extend(f"7{h[i:i + 3]}-{_VARIANT[h[i + 3]]}{h[i + 4:i + 7]}-{h[i + 7:i + 19]}"
                                           for i in range(0, len(h), 20))


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 9562 variant bits 10
_TAILS = _IdTails()


def new_txn_id() -> str:
    """A time-ordered UUID (version 7: 48-bit Unix milliseconds, version 7, 74 random bits).

    Ids made on one terminal sort by creation time, so the id index grows at its right edge
    instead of splitting random pages on every append."""
    ms = time.time_ns() // 1_000_000
    return f"{ms >> 16:08x}-{ms & 0xffff:04x}-{_TAILS.take()}"


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _json(value: Any) -> str:
    """Canonical JSON: keys sorted, no spaces, UTF-8 text (one encoder, built once)."""
    return _ENCODER.encode(value)


_str = json.encoder.encode_basestring  # the string encoder _ENCODER uses (ensure_ascii=False)


def canonical_txn_parts(
    *, amount: int, auth_mode: str, business_date: str, card_token: str | None, created_at: str,
    currency: str, decision: str, details_json: str, id: str, kind: str, masked_pan: str | None,
    method: str, operator: str | None, reasons_json: str, reference: str | None, scheme: str | None,
    sealed_card: str | None, terminal_id: str,
) -> tuple[str, str, str]:
    """The canonical JSON of a transaction record (what `_json(record)` gives, keys in sorted order)
    in three pieces around the two values only known inside the write transaction:
    `head + prev_hash + middle + seq + tail`. tests/unit/test_journal_format.py checks it byte for
    byte against the generic encoder on generated records."""
    # optional values inline ("null" or the JSON string): this runs on every append
    head = (
        f'{{"amount":{int(amount)},"auth_mode":{_str(auth_mode)},"business_date":{_str(business_date)},'
        f'"card_token":{"null" if card_token is None else _str(card_token)},"created_at":{_str(created_at)},'
        f'"currency":{_str(currency)},"decision":{_str(decision)},"details":{details_json},"id":{_str(id)},'
        f'"kind":{_str(kind)},"masked_pan":{"null" if masked_pan is None else _str(masked_pan)},'
        f'"method":{_str(method)},"operator":{"null" if operator is None else _str(operator)},"prev_hash":'
    )
    middle = (
        f',"reasons":{reasons_json},"reference":{"null" if reference is None else _str(reference)},'
        f'"scheme":{"null" if scheme is None else _str(scheme)},'
        f'"sealed_card":{"null" if sealed_card is None else _str(sealed_card)},"seq":'
    )
    return head, middle, f',"terminal_id":{_str(terminal_id)}}}'


@functools.lru_cache(maxsize=512)
def _reasons_json(reasons: tuple[str, ...]) -> str:
    """Reason lists repeat (a few dozen codes), so their JSON is cached."""
    return _json(list(reasons))


def _check_plain(value: Any, where: str) -> None:
    """Signed details hold only str/int/bool/None, lists and string-keyed dicts (no floats)."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, where)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be strings")
            _check_plain(v, where)
        return
    raise ValueError(f"{where}: {type(value).__name__} values cannot be journaled (no floats)")


def canonical_bytes(record: Mapping[str, Any], names: Sequence[str] = SIGNED_FIELDS) -> bytes:
    return _json({k: record[k] for k in names}).encode("utf-8")


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
    sealed_card: str | None
    details: Mapping[str, Any]
    prev_hash: str
    row_hash: str
    signature: str
    sync_state: str
    sync_attempts: int
    sync_error: str | None
    sync_reason: str | None
    synced_at: datetime | None

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
            "sealed_card": self.sealed_card,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
        }

    def to_dict(self) -> dict[str, Any]:
        out = self.signed_record()
        out.update(
            row_hash=self.row_hash,
            signature=self.signature,
            sync_state=self.sync_state,
            sync_attempts=self.sync_attempts,
            sync_error=self.sync_error,
            sync_reason=self.sync_reason,
            synced_at=utc_text(self.synced_at) if self.synced_at else None,
        )
        return out


@dataclass(frozen=True, slots=True)
class PayerTotals:
    amount_today: int  # minor units approved today (all auth modes), sales and fares
    offline_amount_today: int
    offline_count_today: int


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    rows_checked: int
    audit_rows_checked: int
    first_bad_seq: int | None = None
    table: str | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows_checked": self.rows_checked,
            "audit_rows_checked": self.audit_rows_checked,
            "first_bad_seq": self.first_bad_seq,
            "table": self.table,
            "problem": self.problem,
        }


def _storage_error(exc: sqlite3.Error, path: Path, doing: str) -> StorageError:
    text = str(exc)
    low = text.lower()
    if "full" in low or "too large" in low:
        hint = "the disk is full; free space in the data directory"
    elif "readonly" in low or "read-only" in low or "unable to open" in low:
        hint = "the data directory is not writable; check the disk and its permissions"
    elif "locked" in low or "busy" in low:
        hint = "another walletpos process holds the journal too long; try again"
    elif "malformed" in low or "not a database" in low:
        hint = "the journal file is damaged; keep it for support and call a technician"
    else:
        hint = "check the disk and the data directory"
    return StorageError(f"journal {path}: cannot {doing}: {text} ({hint})", title="Cannot record")


class Journal:
    """One connection to the journal file; safe to share between threads of one process."""

    def __init__(self, path: Path, keys: TerminalKeys, terminal_id: str, *, now: datetime | None = None):
        self.path = Path(path)
        self._keys = keys
        self.terminal_id = terminal_id
        self._lock = threading.RLock()
        self._head: tuple[int, str] | None = None  # (seq, row_hash) of the newest row this connection knows
        self._closed = False
        try:
            if not self.path.exists():  # owner-only from the first byte; SQLite gives -wal/-shm the same mode
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StorageError(f"journal {self.path}: cannot create: {exc.strerror} (check the data directory)",
                               title="Cannot record") from None
        try:
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA busy_timeout = 10000")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode}, WAL required")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(_SCHEMA)
            self._init_meta(now or datetime.now(UTC))
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "open") from None

    def _init_meta(self, now: datetime) -> None:
        with self._write():
            have = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            defaults = {
                "schema_version": str(SCHEMA_VERSION),
                "terminal_id": self.terminal_id,
                "installed_at": utc_text(now),
                "public_key": self._keys.public_key_bytes.hex(),
                "deny_list_version": "0",
            }
            for key, value in defaults.items():
                if key not in have:
                    self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
        stored = self.meta("terminal_id")
        if stored != self.terminal_id:
            raise StorageError(
                f"journal {self.path} belongs to terminal {stored}, not {self.terminal_id}; "
                "use that terminal's data directory or a new one"
            )

    # -- plumbing -------------------------------------------------------------------------------

    class _Tx:
        def __init__(self, journal: Journal):
            self.j = journal

        def __enter__(self) -> sqlite3.Connection:
            self.j._lock.acquire()
            try:
                self.j._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.j._lock.release()
                raise
            return self.j._db

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            try:
                if exc_type is None:
                    self.j._db.execute("COMMIT")
                else:
                    self.j._db.execute("ROLLBACK")
            except sqlite3.Error:
                if self.j._db.in_transaction:
                    self.j._db.execute("ROLLBACK")
                raise
            finally:
                self.j._lock.release()

    def _write(self) -> Journal._Tx:
        return Journal._Tx(self)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _storage_error(exc, self.path, "read") from None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.seal_head()
            except StorageError as exc:  # read-only or full disk: nothing new can have been written
                logging.getLogger("walletpos.journal").warning("journal not sealed on close: %s", exc)
            self._db.close()

    def meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, values: Mapping[str, str]) -> None:
        try:
            with self._write() as db:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    list(values.items()),
                )
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "save settings") from None

    @property
    def installed_at(self) -> datetime:
        value = self.meta("installed_at")
        assert value is not None
        return parse_utc(value)

    # -- transactions ---------------------------------------------------------------------------

    def append(self, txn: NewTransaction, *, now: datetime, business_date: date,
               claim: CodeClaim | None = None) -> TxnRow:
        """Sign and durably store one transaction; returns only after the commit is on disk.

        With `claim`, the wallet code is marked used in the same transaction: either both are
        stored or neither, and a code already used raises `CodeAlreadyUsed` (nothing stored)."""
        if txn.kind not in KINDS:
            raise ValueError(f"unknown kind {txn.kind!r}")
        if txn.decision not in DECISIONS:
            raise ValueError(f"unknown decision {txn.decision!r}")
        if txn.auth_mode not in AUTH_MODES:
            raise ValueError(f"unknown auth mode {txn.auth_mode!r}")
        details = dict(txn.details)
        if details:
            _check_plain(details, "details")
        txn_id = txn.id or new_txn_id()
        created_at = utc_text(now)
        day = business_date.isoformat()
        amount = txn.amount
        cur = amount.currency.alpha
        reasons_json, details_json = _reasons_json(txn.reasons), (_json(details) if details else "{}")
        head_json, middle_json, tail_json = canonical_txn_parts(
            amount=amount.minor, auth_mode=txn.auth_mode, business_date=day, card_token=txn.card_token,
            created_at=created_at, currency=cur, decision=txn.decision, details_json=details_json, id=txn_id,
            kind=txn.kind, masked_pan=txn.masked_pan, method=txn.method, operator=txn.operator,
            reasons_json=reasons_json, reference=txn.reference, scheme=txn.scheme,
            sealed_card=txn.sealed_card, terminal_id=self.terminal_id,
        )
        db = self._db
        try:
            with self._lock:  # the write transaction inline (not `_write()`): this runs on every approval
                db.execute("BEGIN IMMEDIATE")
                try:
                    head = self._head
                    while True:
                        if head is None:
                            head = db.execute("SELECT seq, row_hash FROM txn ORDER BY seq DESC LIMIT 1").fetchone()
                            head = head or (0, GENESIS_HASH)
                        seq, prev = head[0] + 1, head[1]
                        raw_digest = hashlib.sha256(
                            f"{head_json}{_str(prev)}{middle_json}{seq}{tail_json}".encode()).digest()
                        digest = raw_digest.hex()
                        signature = self._keys.sign(raw_digest).hex()
                        try:
                            db.execute(_INSERT_TXN, (
                                seq, txn_id, self.terminal_id, created_at, day, txn.kind, amount.minor, cur,
                                txn.method, txn.scheme, txn.card_token, txn.masked_pan, txn.decision,
                                reasons_json, txn.auth_mode, txn.reference, txn.operator, txn.sealed_card,
                                details_json, prev, digest, signature))
                        except sqlite3.IntegrityError as exc:
                            if "txn.seq" in str(exc) and head is self._head:
                                head = None  # another process appended since: read the real head and retry
                                continue
                            raise
                        break
                    if claim is not None:
                        try:
                            db.execute("INSERT INTO used_codes (wallet_id, counter, key_id, txn_id, used_at) "
                                       "VALUES (?, ?, ?, ?, ?)",
                                       (claim.wallet_id, claim.counter, claim.key_id, txn_id, created_at))
                        except sqlite3.IntegrityError:
                            raise CodeAlreadyUsed(
                                f"wallet code {claim.wallet_id}/{claim.counter} was already used") from None
                    if seq % SEAL_EVERY == 0:
                        self._seal(db, created_at)
                    db.execute("COMMIT")
                except BaseException:
                    self._head = None
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"journal {self.path}: transaction {txn_id} not stored: {exc}") from None
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "record the transaction") from None
        self._head = (seq, digest)
        return TxnRow(seq, txn_id, self.terminal_id, now if now.tzinfo is UTC else now.astimezone(UTC),
                      business_date, txn.kind, amount, txn.method, txn.scheme, txn.card_token, txn.masked_pan,
                      txn.decision, txn.reasons, txn.auth_mode, txn.reference, txn.operator, txn.sealed_card,
                      details, prev, digest, signature, "pending", 0, None, None, None)

    @staticmethod
    def _row(values: Sequence[Any]) -> TxnRow:
        (seq, id_, terminal_id, created_at, business_date, kind, amount, cur, method, scheme,
         card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_card,
         details, prev_hash, row_hash, signature, sync_state, sync_attempts, sync_error,
         sync_reason, synced_at) = values
        return TxnRow(
            seq, id_, terminal_id, parse_utc(created_at), date.fromisoformat(business_date), kind,
            Money(amount, currency(cur)), method, scheme, card_token, masked_pan, decision, tuple(json.loads(reasons)),
            auth_mode, reference, operator, sealed_card, json.loads(details), prev_hash, row_hash, signature,
            sync_state, sync_attempts, sync_error, sync_reason, parse_utc(synced_at) if synced_at else None,
        )

    def _rows(self, where: str = "", params: Sequence[Any] = (), *, order: str = "seq",
              limit: int | None = None) -> list[TxnRow]:
        sql = f"SELECT {_TXN_COLUMNS} FROM txn {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._row(r) for r in self._read(sql, params)]

    def get(self, txn_id: str) -> TxnRow | None:
        rows = self._rows("WHERE id = ?", (txn_id,))
        return rows[0] if rows else None

    def find(self, text: str) -> list[TxnRow]:
        """Rows whose id contains `text` (at least 6 characters: a shortened receipt reference)."""
        text = text.strip().lower()
        if len(text) < 6:
            return []
        like = "%" + text.replace("%", "\\%").replace("_", "\\_") + "%"
        return self._rows("WHERE id LIKE ? ESCAPE '\\'", (like,), order="seq DESC", limit=20)

    def recent(self, limit: int = 50, *, search: str | None = None, since: datetime | None = None) -> list[TxnRow]:
        """Newest first; `search` matches reference prefix, masked PAN digits, method, scheme or kind."""
        clauses, params = [], []
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(utc_text(since))
        if search:
            like = "%" + search.strip().replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append(
                "(id LIKE ? ESCAPE '\\' OR masked_pan LIKE ? ESCAPE '\\' OR method LIKE ? ESCAPE '\\' "
                "OR scheme LIKE ? ESCAPE '\\' OR kind LIKE ? ESCAPE '\\' OR decision LIKE ? ESCAPE '\\')"
            )
            params.extend([like] * 6)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self._rows(where, params, order="seq DESC", limit=limit)

    def rows_since(self, since: datetime | None = None) -> Iterator[TxnRow]:
        """All rows in sequence order (created at or after `since`), fetched in pages."""
        after = 0
        while True:
            where, params = "WHERE seq > ?", [after]
            if since is not None:
                where += " AND created_at >= ?"
                params.append(utc_text(since))
            page = self._rows(where, params, limit=1000)
            if not page:
                return
            yield from page
            after = page[-1].seq

    def rows_after(self, seq: int) -> Iterator[TxnRow]:
        """All rows with a sequence number above `seq`, in order, fetched in pages."""
        after = seq
        while True:
            page = self._rows("WHERE seq > ?", (after,), limit=1000)
            if not page:
                return
            yield from page
            after = page[-1].seq

    def rows_for_day(self, business_date: date) -> list[TxnRow]:
        return self._rows("WHERE business_date = ?", (business_date.isoformat(),))

    def last_sale(self) -> TxnRow | None:
        rows = self._rows("WHERE kind IN ('sale', 'fare') AND decision = 'approved'", order="seq DESC", limit=1)
        return rows[0] if rows else None

    def related(self, original_id: str) -> list[TxnRow]:
        """Refunds and voids that reference a sale."""
        return self._rows("WHERE reference = ? AND kind IN ('refund', 'void')", (original_id,))

    def payer_totals(self, card_token: str | None, business_date: date) -> PayerTotals:
        if not card_token:
            return PayerTotals(0, 0, 0)
        rows = self._read(
            "SELECT COALESCE(SUM(amount), 0), "
            "COALESCE(SUM(CASE WHEN auth_mode IN ('offline', 'offline_fallback') THEN amount END), 0), "
            "COUNT(CASE WHEN auth_mode IN ('offline', 'offline_fallback') THEN 1 END) "
            "FROM txn WHERE card_token = ? AND business_date = ? AND decision = 'approved' "
            "AND kind IN ('sale', 'fare')",
            (card_token, business_date.isoformat()),
        )
        total, offline_amount, offline_count = rows[0]
        return PayerTotals(total, offline_amount, offline_count)

    def unsynced_exposure(self, cur: Currency) -> Money:
        """Offline-approved sales and fares the backend has not yet accepted."""
        rows = self._read(
            "SELECT COALESCE(SUM(amount), 0) FROM txn WHERE sync_state = 'pending' "
            "AND decision = 'approved' AND auth_mode IN ('offline', 'offline_fallback') "
            "AND kind IN ('sale', 'fare') AND currency = ?",
            (cur.alpha,),
        )
        return Money(rows[0][0], cur)

    def pending(self, limit: int = 500, *, after_seq: int = 0) -> list[TxnRow]:
        return self._rows("WHERE sync_state = 'pending' AND seq > ?", (after_seq,), limit=limit)

    def queue_summary(self) -> dict[str, Any]:
        rows = self._read(
            "SELECT COUNT(*), MIN(created_at) FROM txn WHERE sync_state = 'pending'"
        )
        count, oldest = rows[0]
        return {"pending": count, "oldest_pending_at": oldest}

    def counts(self) -> dict[str, int]:
        rows = self._read(
            "SELECT COUNT(*), COUNT(CASE WHEN decision = 'approved' THEN 1 END), "
            "COUNT(CASE WHEN decision = 'declined' THEN 1 END), "
            "COUNT(CASE WHEN sync_state = 'pending' THEN 1 END), "
            "COUNT(CASE WHEN sync_state = 'declined_after_offline' THEN 1 END) FROM txn"
        )
        total, approved, declined, pending, dao = rows[0]
        return {"total": total, "approved": approved, "declined": declined, "pending_sync": pending,
                "declined_after_offline": dao}

    def set_sync_results(self, results: Sequence[tuple[str, str, str | None]], *, now: datetime) -> None:
        """Record backend answers: (transaction id, sync state, reason)."""
        for _, state, _ in results:
            if state not in SYNC_STATES:
                raise ValueError(f"unknown sync state {state!r}")
        try:
            with self._write() as db:
                db.executemany(
                    "UPDATE txn SET sync_state = ?, sync_reason = ?, synced_at = ?, sync_error = NULL "
                    "WHERE id = ?",
                    [(state, reason, utc_text(now), txn_id) for txn_id, state, reason in results],
                )
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "record sync results") from None

    def note_sync_attempt(self, ids: Sequence[str], error: str | None) -> None:
        try:
            with self._write() as db:
                db.executemany(
                    "UPDATE txn SET sync_attempts = sync_attempts + 1, sync_error = ? WHERE id = ?",
                    [(error, i) for i in ids],
                )
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "record a sync attempt") from None

    def sync_state_counts(self) -> dict[str, int]:
        """How many rows are in each sync state (pending, accepted, duplicate, declined_after_offline, rejected)."""
        counts = dict.fromkeys(SYNC_STATES, 0)
        counts.update(self._read("SELECT sync_state, COUNT(*) FROM txn GROUP BY sync_state"))
        return counts

    def requeue_for_sync(self, ranges: Sequence[tuple[int, int]]) -> int:
        """Mark rows the backend reports missing (sequence ranges, inclusive) as pending again, if this
        terminal took them for delivered (accepted or duplicate). Returns how many were requeued."""
        try:
            with self._write() as db:
                return sum(
                    db.execute("UPDATE txn SET sync_state = 'pending', synced_at = NULL WHERE seq BETWEEN ? AND ? "
                               "AND sync_state IN ('accepted', 'duplicate')", (first, last)).rowcount
                    for first, last in ranges
                )
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "requeue rows for sync") from None

    def code_used(self, wallet_id: str, counter: int) -> str | None:
        """The id of the transaction that used this wallet code, or None."""
        rows = self._read("SELECT txn_id FROM used_codes WHERE wallet_id = ? AND counter = ?", (wallet_id, counter))
        return rows[0][0] if rows else None

    # -- operators ------------------------------------------------------------------------------

    _OPERATOR_COLUMNS = ("id", "name", "role", "pin_salt", "pin_hash", "failed_attempts", "locked_until", "active")

    def operator_record(self, operator_id: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT {', '.join(self._OPERATOR_COLUMNS)} FROM operators WHERE id = ?", (operator_id,))
        return dict(zip(self._OPERATOR_COLUMNS, rows[0], strict=True)) if rows else None

    def operator_records(self) -> list[dict[str, Any]]:
        rows = self._read(f"SELECT {', '.join(self._OPERATOR_COLUMNS)} FROM operators ORDER BY role, id")
        return [dict(zip(self._OPERATOR_COLUMNS, r, strict=True)) for r in rows]

    def save_operator(self, operator_id: str, name: str, role: str, salt: bytes, pin_hash: bytes, *,
                      now: datetime) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO operators (id, name, role, pin_salt, pin_hash, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET name = excluded.name, role = excluded.role, "
                    "pin_salt = excluded.pin_salt, pin_hash = excluded.pin_hash, failed_attempts = 0, "
                    "locked_until = NULL, active = 1",
                    (operator_id, name, role, salt.hex(), pin_hash.hex(), utc_text(now)),
                )
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "save the operator") from None

    def set_operator_failures(self, operator_id: str, failures: int, locked_until: str | None) -> None:
        try:
            with self._write() as db:
                db.execute("UPDATE operators SET failed_attempts = ?, locked_until = ? WHERE id = ?",
                           (failures, locked_until, operator_id))
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "record the PIN attempt") from None

    # -- issuer keys (signed wallet codes) -------------------------------------------------------

    def issuer_keys(self) -> dict[str, bytes]:
        """Issuer public keys delivered by the backend: key id -> raw Ed25519 public key."""
        return {k: bytes.fromhex(v) for k, v in self._read("SELECT key_id, public_key FROM issuer_keys")}

    def replace_issuer_keys(self, keys: Mapping[str, bytes], version: int, *, now: datetime) -> None:
        """Replace the backend-delivered issuer keys with `keys` (a full set, atomically)."""
        try:
            with self._write() as db:
                db.execute("DELETE FROM issuer_keys WHERE source = 'backend'")
                db.executemany(
                    "INSERT INTO issuer_keys (key_id, public_key, source, added_at) VALUES (?, ?, 'backend', ?)",
                    [(k, v.hex(), utc_text(now)) for k, v in keys.items()],
                )
                db.execute("INSERT INTO meta (key, value) VALUES ('issuer_keys_version', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(version),))
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "store issuer keys") from None

    # -- merchant codes (the terminal's own QR) ---------------------------------------------------

    def open_merchant_code(self, reference: str, txn_id: str, amount: Money, operator: str | None, *,
                           now: datetime) -> None:
        """Remember a merchant code before it is shown: until it is closed (paid, cancelled at the
        backend) a payment for it can arrive, and the terminal must be able to record it."""
        try:
            with self._write() as db:
                db.execute("INSERT INTO merchant_codes (reference, txn_id, amount, currency, operator, shown_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (reference, txn_id, amount.minor, amount.currency.alpha, operator, utc_text(now)))
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "record the merchant code") from None

    def request_merchant_code_close(self, reference: str) -> None:
        """The code left the screen unpaid: it must be closed at the backend (now, or when it answers)."""
        try:
            with self._write() as db:
                db.execute("UPDATE merchant_codes SET close_requested = 1 WHERE reference = ?", (reference,))
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "update the merchant code") from None

    def close_merchant_code(self, reference: str, outcome: str, *, now: datetime) -> None:
        try:
            with self._write() as db:
                db.execute("UPDATE merchant_codes SET closed_at = ?, outcome = ? WHERE reference = ? "
                           "AND closed_at IS NULL", (utc_text(now), outcome, reference))
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "close the merchant code") from None

    def open_merchant_codes(self) -> list[dict[str, Any]]:
        """Merchant codes shown and not yet closed, oldest first."""
        rows = self._read("SELECT reference, txn_id, amount, currency, operator, shown_at, close_requested "
                          "FROM merchant_codes WHERE closed_at IS NULL ORDER BY shown_at")
        return [{"reference": r, "txn_id": t, "amount": Money(a, currency(c)), "operator": o,
                 "shown_at": parse_utc(at), "close_requested": bool(cr)} for r, t, a, c, o, at, cr in rows]

    # -- deny list ------------------------------------------------------------------------------

    def is_denied(self, card_token: str | None) -> bool:
        if not card_token:
            return False
        return bool(self._read("SELECT 1 FROM deny_list WHERE card_token = ?", (card_token,)))

    def deny_list_version(self) -> int:
        return int(self.meta("deny_list_version") or 0)

    def deny_list_size(self) -> int:
        return self._read("SELECT COUNT(*) FROM deny_list")[0][0]

    def apply_deny_delta(
        self, version: int, added: Sequence[tuple[str, str]], removed: Sequence[str], *, now: datetime
    ) -> None:
        """Apply a backend deny-list delta (tokens with reasons added, tokens removed) atomically."""
        try:
            with self._write() as db:
                db.executemany(
                    "INSERT INTO deny_list (card_token, reason, source, added_at, version) "
                    "VALUES (?, ?, 'backend', ?, ?) ON CONFLICT(card_token) DO UPDATE SET "
                    "reason = excluded.reason, source = 'backend', version = excluded.version",
                    [(token, reason, utc_text(now), version) for token, reason in added],
                )
                db.executemany("DELETE FROM deny_list WHERE card_token = ?", [(t,) for t in removed])
                db.execute("UPDATE meta SET value = ? WHERE key = 'deny_list_version'", (str(version),))
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "update the deny list") from None

    def deny_list_entries(self, source: str | None = None) -> list[tuple[str, str, str]]:
        """(card token, reason, source) of every entry, or of one source ('backend' or 'local')."""
        if source is None:
            return self._read("SELECT card_token, reason, source FROM deny_list ORDER BY card_token")
        return self._read("SELECT card_token, reason, source FROM deny_list WHERE source = ? ORDER BY card_token",
                          (source,))

    def deny_locally(self, card_token: str, reason: str, *, now: datetime) -> None:
        """Deny a token on this terminal (e.g. after a decline following an offline approval)."""
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO deny_list (card_token, reason, source, added_at, version) "
                    "VALUES (?, ?, 'local', ?, 0) ON CONFLICT(card_token) DO NOTHING",
                    (card_token, reason, utc_text(now)),
                )
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "update the deny list") from None

    # -- audit ----------------------------------------------------------------------------------

    def audit(self, event: str, *, now: datetime, actor: str | None = None,
              details: Mapping[str, Any] | None = None) -> int:
        details = dict(details or {})
        _check_plain(details, "audit details")
        record: dict[str, Any] = {"terminal_id": self.terminal_id, "at": utc_text(now), "event": event,
                                  "actor": actor, "details": details}
        try:
            with self._write() as db:
                head = db.execute("SELECT seq, row_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
                record.update(seq=seq, prev_hash=prev)
                digest = record_hash(record, _AUDIT_SIGNED)
                signature = self._keys.sign(bytes.fromhex(digest)).hex()
                db.execute(
                    "INSERT INTO audit (seq, terminal_id, at, event, actor, details, prev_hash, row_hash, "
                    "signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, self.terminal_id, record["at"], event, actor, _json(details), prev, digest, signature),
                )
                self._seal(db, record["at"])
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "write the audit log") from None
        return seq

    def audit_rows(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._read(
            "SELECT seq, at, event, actor, details FROM audit ORDER BY seq DESC LIMIT ?", (limit,)
        )
        return [{"seq": s, "at": a, "event": e, "actor": ac, "details": json.loads(d)} for s, a, e, ac, d in rows]

    # -- integrity ------------------------------------------------------------------------------

    def _seal(self, db: sqlite3.Connection, at: str) -> None:
        """Write the signed seal of both chain heads (inside the caller's transaction)."""
        txn = db.execute("SELECT seq, row_hash FROM txn ORDER BY seq DESC LIMIT 1").fetchone() or (0, GENESIS_HASH)
        aud = db.execute("SELECT seq, row_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone() or (0, GENESIS_HASH)
        body = {"terminal_id": self.terminal_id, "txn_seq": txn[0], "txn_hash": txn[1],
                "audit_seq": aud[0], "audit_hash": aud[1], "sealed_at": at}
        body["signature"] = self._keys.sign(hashlib.sha256(_json(body).encode()).digest()).hex()
        db.execute("INSERT INTO meta (key, value) VALUES ('head_seal', ?) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (_json(body),))

    def seal_head(self, now: datetime | None = None) -> None:
        """Seal the current heads if rows were added since the last seal (housekeeping, close)."""
        current = self._read("SELECT (SELECT COALESCE(MAX(seq), 0) FROM txn), "
                             "(SELECT COALESCE(MAX(seq), 0) FROM audit)")[0]
        seal = json.loads(self.meta("head_seal") or "{}")
        if (seal.get("txn_seq", 0), seal.get("audit_seq", 0)) == tuple(current):
            return
        try:
            with self._write() as db:
                self._seal(db, utc_text(now or datetime.now(UTC)))
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path, "seal the journal head") from None

    def _read_seal(self, key: bytes) -> tuple[dict[str, Any], str | None]:
        text = self.meta("head_seal")
        if not text:
            return {}, None
        try:
            seal = json.loads(text)
            body = {k: seal[k] for k in ("terminal_id", "txn_seq", "txn_hash", "audit_seq", "audit_hash",
                                         "sealed_at")}
            signature = bytes.fromhex(seal["signature"])
        except (ValueError, KeyError, TypeError):
            return {}, "the journal's head seal is unreadable"
        if not verify_signature(key, signature, hashlib.sha256(_json(body).encode()).digest()):
            return {}, "the journal's head seal is not signed by this terminal"
        return body, None

    def verify(self, public_key: bytes | None = None) -> VerifyReport:
        """Walk both chains; report the first row that was edited, deleted or reordered."""
        key = public_key or self._keys.public_key_bytes
        txn_checked = audit_checked = 0
        try:
            sealed, seal_problem = self._read_seal(key)
            if seal_problem:
                return VerifyReport(False, 0, 0, None, "meta", seal_problem)
            for table, names in (("txn", SIGNED_FIELDS), ("audit", _AUDIT_SIGNED)):
                expected_seq, prev = 1, GENESIS_HASH
                checked = 0
                sealed_hash_seen = None
                for record, row_hash, signature in self._chain_records(table):
                    problem = None
                    if "unreadable" in record and record["seq"] == expected_seq:
                        problem, bad = f"the row cannot be read ({record['unreadable']})", expected_seq
                    elif record["seq"] != expected_seq:
                        problem = (f"row {expected_seq} is missing (next stored row is {record['seq']})"
                                   if record["seq"] > expected_seq else f"row {record['seq']} is out of order")
                        bad = expected_seq
                    elif record["prev_hash"] != prev:
                        problem, bad = "its previous-row hash does not match: rows were removed or reordered", \
                            expected_seq
                    elif record_hash(record, names) != row_hash:
                        problem, bad = "its content does not match its hash: the row was edited", expected_seq
                    elif not verify_signature(key, bytes.fromhex(signature), bytes.fromhex(row_hash)):
                        problem, bad = "its signature is not the terminal's", expected_seq
                    if problem:
                        return self._bad(table, bad, problem, txn_checked, audit_checked, checked)
                    prev, expected_seq = row_hash, expected_seq + 1
                    checked += 1
                    if record["seq"] == sealed.get(f"{table}_seq"):
                        sealed_hash_seen = row_hash
                if table == "txn":
                    txn_checked = checked
                else:
                    audit_checked = checked
                head = sealed.get(f"{table}_seq", 0)
                if head >= expected_seq:
                    return self._bad(table, expected_seq,
                                     f"rows {expected_seq} to {head} were sealed but are missing",
                                     txn_checked, audit_checked, checked)
                if head and sealed_hash_seen != sealed.get(f"{table}_hash"):
                    return self._bad(table, head, "it differs from the sealed head of the journal",
                                     txn_checked, audit_checked, checked)
        except (sqlite3.Error, StorageError) as exc:
            return VerifyReport(False, txn_checked, audit_checked, None, None, f"cannot read the journal: {exc}")
        return VerifyReport(True, txn_checked, audit_checked)

    @staticmethod
    def _bad(table: str, seq: int, problem: str, txn_checked: int, audit_checked: int,
             checked: int) -> VerifyReport:
        if table == "txn":
            txn_checked = checked
        else:
            audit_checked = checked
        return VerifyReport(False, txn_checked, audit_checked, seq, table, f"{table} row {seq}: {problem}")

    def _chain_records(self, table: str) -> Iterator[tuple[dict[str, Any], str, str]]:
        after = -(2**62)
        while True:
            if table == "txn":
                rows = self._read(f"SELECT {_TXN_COLUMNS} FROM txn WHERE seq > ? ORDER BY seq LIMIT 2000",
                                  (after,))
                if not rows:
                    return
                for values in rows:
                    try:
                        row = self._row(values)
                        yield row.signed_record(), row.row_hash, row.signature
                    except (ValueError, TypeError, KeyError) as exc:
                        yield {"seq": values[0], "unreadable": str(exc)}, "", ""
                after = rows[-1][0]
            else:
                rows = self._read(
                    "SELECT seq, terminal_id, at, event, actor, details, prev_hash, row_hash, signature "
                    "FROM audit WHERE seq > ? ORDER BY seq LIMIT 2000", (after,))
                if not rows:
                    return
                for seq, term, at, event, actor, details, prev, row_hash, signature in rows:
                    record = {"seq": seq, "terminal_id": term, "at": at, "event": event, "actor": actor,
                              "details": json.loads(details), "prev_hash": prev}
                    yield record, row_hash, signature
                after = rows[-1][0]
