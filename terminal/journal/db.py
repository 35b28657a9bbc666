"""The journal's SQLite file: one connection shared by the repositories, its schema, its write
transactions and the translation of SQLite failures into `StorageError`s that say what to do.

- WAL mode with `synchronous=FULL`: a write transaction returns only after its commit is on disk.
- The file is created owner-only (0600) before SQLite opens it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from terminal.errors import StorageError
from terminal.journal.record import utc_text

log = logging.getLogger("walletpos.journal")

SCHEMA_VERSION = 1

SCHEMA = """
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



def storage_error(exc: sqlite3.Error, path: Path, doing: str) -> StorageError:
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


class Database:
    """One connection to the journal file; safe to share between threads of one process."""

    def __init__(self, path: Path, *, terminal_id: str, public_key_hex: str, now: datetime | None = None):
        self.path = Path(path)
        self.terminal_id = terminal_id
        self.lock = threading.RLock()
        self.closed = False
        try:
            if not self.path.exists():  # owner-only from the first byte; SQLite gives -wal/-shm the same mode
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StorageError(f"journal {self.path}: cannot create: {exc.strerror} (check the data directory)",
                               title="Cannot record") from None
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0)
            self.db.execute("PRAGMA busy_timeout = 10000")
            mode = self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode}, WAL required")
            self.db.execute("PRAGMA synchronous = FULL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.executescript(SCHEMA)
            self._init_meta(now or datetime.now(UTC), public_key_hex)
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "open") from None

    def _init_meta(self, now: datetime, public_key_hex: str) -> None:
        with self.write():
            have = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
            defaults = {
                "schema_version": str(SCHEMA_VERSION),
                "terminal_id": self.terminal_id,
                "installed_at": utc_text(now),
                "public_key": public_key_hex,
                "deny_list_version": "0",
            }
            for key, value in defaults.items():
                if key not in have:
                    self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
        stored = self.meta("terminal_id")
        if stored != self.terminal_id:
            raise StorageError(
                f"journal {self.path} belongs to terminal {stored}, not {self.terminal_id}; "
                "use that terminal's data directory or a new one"
            )

    def write(self) -> WriteTx:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on an exception)."""
        return WriteTx(self)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            try:
                return self.db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise storage_error(exc, self.path, "read") from None

    def fail(self, exc: sqlite3.Error, doing: str) -> StorageError:
        return storage_error(exc, self.path, doing)

    def meta(self, key: str) -> str | None:
        rows = self.read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, values: Mapping[str, str]) -> None:
        try:
            with self.write() as db:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    list(values.items()),
                )
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "save settings") from None

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.db.close()


class WriteTx:
    def __init__(self, database: Database):
        self.d = database

    def __enter__(self) -> sqlite3.Connection:
        self.d.lock.acquire()
        try:
            self.d.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.d.lock.release()
            raise
        return self.d.db

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self.d.db.execute("COMMIT")
            else:
                self.d.db.execute("ROLLBACK")
        except sqlite3.Error:
            if self.d.db.in_transaction:
                self.d.db.execute("ROLLBACK")
            raise
        finally:
            self.d.lock.release()
