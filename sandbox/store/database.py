"""The sandbox backend's SQLite file: one connection behind a lock, write transactions, the clock.

The file holds private keys (the sealing key, issuer keys), so it is created readable by its owner
only (0600), in a directory only its owner can enter (0700) when the sandbox creates it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from terminal.journal import utc_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS terminals (
    terminal_id TEXT PRIMARY KEY, public_key TEXT NOT NULL, enrolled_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS enrolment_tokens (
    token TEXT PRIMARY KEY, terminal_id TEXT, created_at TEXT NOT NULL, used_at TEXT, used_by TEXT
);
CREATE TABLE IF NOT EXISTS nonces (
    terminal_id TEXT NOT NULL, nonce TEXT NOT NULL, ts_ms INTEGER NOT NULL, PRIMARY KEY (terminal_id, nonce)
);
CREATE INDEX IF NOT EXISTS nonces_age ON nonces (ts_ms);
CREATE TABLE IF NOT EXISTS transactions (
    terminal_id TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    row_hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    record TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    received_at TEXT NOT NULL,
    times_received INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (terminal_id, id),
    UNIQUE (terminal_id, seq)
);
CREATE TABLE IF NOT EXISTS authorisations (
    terminal_id TEXT NOT NULL, id TEXT NOT NULL, request_digest TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT, auth_code TEXT, decided_at TEXT NOT NULL, PRIMARY KEY (terminal_id, id)
);
CREATE TABLE IF NOT EXISTS deny_changes (
    version INTEGER PRIMARY KEY AUTOINCREMENT, card_token TEXT NOT NULL, action TEXT NOT NULL,
    reason TEXT NOT NULL, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deny_list (card_token TEXT PRIMARY KEY, reason TEXT NOT NULL, added_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cpm_counters (card_token TEXT NOT NULL, atc TEXT NOT NULL, PRIMARY KEY (card_token, atc));
CREATE TABLE IF NOT EXISTS out_of_funds (card_token TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS card_pins (card_token TEXT PRIMARY KEY, pin_hash TEXT NOT NULL, set_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    reference TEXT PRIMARY KEY, status TEXT NOT NULL, amount INTEGER, currency TEXT, paid_at TEXT, card_token TEXT,
    terminal_id TEXT, registered_amount INTEGER, registered_currency TEXT, valid_until TEXT, registered_at TEXT
);
CREATE TABLE IF NOT EXISTS issuer_keys (
    key_id TEXT PRIMARY KEY, private_key TEXT NOT NULL, public_key TEXT NOT NULL, created_at TEXT NOT NULL,
    retired_at TEXT
);
CREATE TABLE IF NOT EXISTS heartbeats (terminal_id TEXT PRIMARY KEY, received_at TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS support_requests (
    terminal_id TEXT PRIMARY KEY, requested_at TEXT NOT NULL, note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS support_bundles (
    ticket TEXT PRIMARY KEY, terminal_id TEXT NOT NULL, received_at TEXT NOT NULL, reason TEXT NOT NULL,
    file_name TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS transit_taps (
    terminal_id TEXT NOT NULL, id TEXT NOT NULL, card_token TEXT NOT NULL, at TEXT NOT NULL, station TEXT NOT NULL,
    gate_direction TEXT NOT NULL, gate TEXT NOT NULL, gate_amount INTEGER NOT NULL, concession TEXT,
    PRIMARY KEY (terminal_id, id)
);
CREATE INDEX IF NOT EXISTS transit_taps_card ON transit_taps (card_token, at);
CREATE INDEX IF NOT EXISTS transit_taps_at ON transit_taps (at);
"""

# columns added to a table after sandbox files with the older table existed
_ADDED_COLUMNS = {
    "payments": (("terminal_id", "TEXT"), ("registered_amount", "INTEGER"), ("registered_currency", "TEXT"),
                 ("valid_until", "TEXT"), ("registered_at", "TEXT")),
}


def _private_file(path: Path) -> None:
    """Create `path` readable and writable by its owner only (its directory 0700 when it is new),
    or take group and other permissions away from an existing file."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
        path.parent.chmod(0o700)  # mkdir's mode is cut by the umask
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class Database:
    """One SQLite connection (WAL) shared by the repositories, and the backend's clock (which tests
    can move with `clock_offset_s`)."""

    def __init__(self, path: Path | str, *, clock_offset_s: float = 0.0):
        self.path = Path(path)
        _private_file(self.path)
        self.lock = threading.RLock()
        self.connection = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self.connection.execute("PRAGMA journal_mode = WAL")
        self.connection.execute("PRAGMA synchronous = NORMAL")
        # declared references are checked; a deferred one that fails makes COMMIT fail, which the
        # transaction helper must survive (it rolls back)
        self.connection.execute("PRAGMA foreign_keys = ON")
        self.connection.executescript(_SCHEMA)
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in self.connection.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    self.connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        for suffix in ("-wal", "-shm"):  # SQLite creates them with the database file's mode
            side = Path(f"{self.path}{suffix}")
            if side.exists() and side.stat().st_mode & 0o077:
                side.chmod(0o600)
        self.clock_offset_s = clock_offset_s

    def close(self) -> None:
        with self.lock:
            self.connection.close()

    # -- clock ------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)

    def now_text(self) -> str:
        return utc_text(self.now())

    def now_ms(self) -> int:
        return int(self.now().timestamp() * 1000)

    # -- reads and write transactions -------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE) under the lock: committed when the block ends,
        rolled back when it raises. When COMMIT itself fails (a deferred constraint, a full disk),
        the transaction is rolled back too, so that the next BEGIN does not find one still open."""
        with self.lock:
            db = self.connection
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self.lock:
            return self.connection.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.connection.execute(sql, params).fetchall()

    # -- meta (single values) ---------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    @staticmethod
    def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (key, value))
