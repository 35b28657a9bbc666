"""The journal's SQLite file: its schema, one writer connection shared by the repositories, a reader
connection per thread, write transactions, and the translation of SQLite failures into
`StorageError`s that say what to do.

- WAL mode with `synchronous=FULL`: a write transaction returns only after its commit is on disk.
- Reads (status bars, searches, reports, exports) go through a small pool of reader connections, so
  a long read never holds the lock a payment's write transaction needs; WAL readers do not block
  the writer.
- The file is created owner-only (0600) before SQLite opens it; `auto_vacuum = INCREMENTAL`, so the
  space of archived rows can be given back without rewriting the file.
- `open_read_only` opens a journal for checking without writing anything (also a technician's copy
  on a read-only medium).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from terminal.errors import StorageError
from terminal.journal.record import utc_text
from terminal.security import check_not_writable_by_others

log = logging.getLogger("walletpos.journal")

SCHEMA_VERSION = 3

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
    sealed_card_sha256 BLOB,
    details TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    row_hash BLOB NOT NULL,
    signature BLOB,
    sync_state TEXT NOT NULL DEFAULT 'pending',
    sync_attempts INTEGER NOT NULL DEFAULT 0,
    sync_error TEXT,
    sync_reason TEXT,
    synced_at TEXT,
    short_ref TEXT
);
CREATE INDEX IF NOT EXISTS txn_payer_day ON txn (card_token, business_date) WHERE card_token IS NOT NULL;
CREATE INDEX IF NOT EXISTS txn_reference ON txn (reference) WHERE reference IS NOT NULL;
CREATE INDEX IF NOT EXISTS txn_pending ON txn (seq) WHERE sync_state = 'pending';
CREATE INDEX IF NOT EXISTS txn_rejected ON txn (seq) WHERE sync_state = 'rejected';
CREATE INDEX IF NOT EXISTS txn_day ON txn (business_date);
CREATE INDEX IF NOT EXISTS txn_created ON txn (created_at);
CREATE INDEX IF NOT EXISTS txn_short_ref ON txn (short_ref);
CREATE INDEX IF NOT EXISTS txn_id_tail ON txn (substr(id, -8));
CREATE INDEX IF NOT EXISTS txn_last4 ON txn (substr(masked_pan, -4)) WHERE masked_pan IS NOT NULL;
CREATE TABLE IF NOT EXISTS sealed_card (seq INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL, mac BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deny_list (
    card_token TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    added_at TEXT NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS used_codes (
    wallet_id TEXT NOT NULL,
    counter INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    used_at TEXT NOT NULL,
    PRIMARY KEY (wallet_id, counter)
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
    if "full" in low:
        text = "the disk is full"
    return StorageError(f"journal {path}: cannot {doing}: {text} ({hint})", title="Cannot record")


def _connect(uri: str, *, read_only: bool) -> sqlite3.Connection:
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10.0)
    db.execute("PRAGMA busy_timeout = 10000")
    if read_only:
        db.execute("PRAGMA query_only = ON")
    return db


def open_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write to the journal at `path` (it is never created or changed).
    A journal on a read-only medium (a technician's copy) is opened as immutable."""
    if not path.is_file():
        raise StorageError(f"journal {path}: no such file", title="Cannot read")
    uri = f"file:{path}?mode=ro"
    try:
        db = _connect(uri, read_only=True)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        if os.access(path.parent, os.W_OK):
            raise
    # a read-only directory: WAL needs its -shm file, which cannot be made; read the file as it is
    return _connect(f"file:{path}?immutable=1", read_only=True)


MAX_IDLE_READERS = 4  # reader connections kept open between reads
# The writer copies the WAL back into the file itself only past this many pages (about a thousand
# payments): before that, housekeeping does it every few seconds on a connection of its own
# (`Database.checkpoint_wal`), so no payment waits for a checkpoint (on a large journal the pages a
# checkpoint writes are scattered over the file: tens of milliseconds).
WRITER_AUTOCHECKPOINT_PAGES = 10_000


class Database:
    """The journal file: one writer connection (safe to share between threads of one process, under
    `lock`) and a pool of reader connections."""

    def __init__(self, path: Path, *, terminal_id: str, public_key_hex: str, now: datetime | None = None):
        self.path = Path(path)
        self.terminal_id = terminal_id
        self.lock = threading.RLock()
        self.closed = False
        # rows this process signed since the last checkpoint: seq -> (row hash, signature). A row whose
        # stored hash and signature are still exactly these needs no second Ed25519 check at the
        # checkpoint (its content hash is recomputed all the same). Bounded: past the bound the
        # checkpoint verifies signatures as usual.
        self.signed_here: dict[int, tuple[bytes, bytes]] = {}
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._checkpoint_lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = None
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            if not self.path.exists():  # owner-only from the first byte; SQLite gives -wal/-shm the same mode
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StorageError(f"journal {self.path}: cannot create: {exc.strerror} (check the data directory)",
                               title="Cannot record") from None
        self.fresh = fresh
        check_not_writable_by_others(self.path)
        try:
            self.db = _connect(f"file:{self.path}", read_only=False)
            if fresh:
                self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode}, WAL required")
            self.db.execute("PRAGMA synchronous = FULL")
            self.db.execute(f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES}")
            self.db.execute("PRAGMA foreign_keys = ON")
            # one write transaction: a second process opening the same new journal waits for it,
            # then finds the schema and its version whole (never the tables without the version)
            with self.write():
                self._check_schema_version()
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self._init_meta(now or datetime.now(UTC), public_key_hex)
            stored = self.meta("terminal_id")
            if stored != self.terminal_id:
                raise StorageError(
                    f"journal {self.path} belongs to terminal {stored}, not {self.terminal_id}; "
                    "use that terminal's data directory or a new one"
                )
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path, "open") from None

    def _check_schema_version(self) -> None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            return
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else 0
        if version != SCHEMA_VERSION:
            raise StorageError(
                f"journal {self.path} has schema version {version}; this walletpos reads version "
                f"{SCHEMA_VERSION}. Export it with the walletpos that wrote it (`walletpos journal export`) "
                "and start this terminal on a new data directory", title="Cannot record")

    def _init_meta(self, now: datetime, public_key_hex: str) -> None:
        """The journal's identity, written once (in the opening write transaction)."""
        have = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        defaults = {
            "schema_version": str(SCHEMA_VERSION),
            "terminal_id": self.terminal_id,
            "installed_at": utc_text(now),
            "public_key": public_key_hex,
        }
        for key, value in defaults.items():
            if key not in have:
                self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))

    def write(self) -> WriteTx:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on an exception)."""
        return WriteTx(self)

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A reader connection from the pool for the duration of the `with` (one read transaction
        per statement; several statements see the writer's commits as they come)."""
        if self.closed:
            raise StorageError(f"journal {self.path}: closed", title="Cannot read")
        try:
            db = self._readers.get_nowait()
        except queue.Empty:
            try:
                db = _connect(f"file:{self.path}?mode=ro", read_only=True)
            except sqlite3.Error as exc:
                raise storage_error(exc, self.path, "read") from None
        try:
            yield db
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if self.closed or self._readers.qsize() >= MAX_IDLE_READERS:
                db.close()
            else:
                self._readers.put(db)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query on a reader connection (never waits for the writer)."""
        try:
            with self.reader() as db:
                return db.execute(sql, params).fetchall()
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

    def checkpoint_wal(self) -> int | None:
        """Copy the WAL's pages back into the database file (PASSIVE: waits for no reader and holds up
        no writer) on a connection of its own, outside `lock`, so no payment waits for it; housekeeping
        calls this. Returns the pages copied, None when another checkpoint runs or it failed (logged:
        the writer's own checkpoint stays as the fallback)."""
        if self.closed or not self._checkpoint_lock.acquire(blocking=False):
            return None
        try:
            if self.closed:
                return None
            if self._checkpointer is None:
                self._checkpointer = _connect(f"file:{self.path}", read_only=False)
                self._checkpointer.execute("PRAGMA synchronous = FULL")
            row = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(row[2])
        except sqlite3.Error as exc:
            log.warning("journal %s: WAL not copied back by housekeeping: %s", self.path, exc)
            return None
        finally:
            self._checkpoint_lock.release()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            with self._checkpoint_lock:
                if self._checkpointer is not None:
                    self._checkpointer.close()
            while True:
                try:
                    self._readers.get_nowait().close()
                except queue.Empty:
                    break
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
