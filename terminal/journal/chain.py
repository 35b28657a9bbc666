"""Integrity of the journal: signed checkpoints, and `verify`, which walks both chains and reports
every kind of damage it finds.

- A checkpoint says "the chains were verified up to transaction row N (hash H) and audit row M", signed
  with the terminal key. The running terminal writes one every few seconds of activity
  (`Chain.checkpoint`, from housekeeping): it walks only the rows appended since the last one, so
  the cost of keeping the journal verified does not grow with its size. The latest checkpoint is
  also kept outside the database, in the anchor file beside it (`anchor.json`), together with the
  backend's last acknowledgement: a journal deleted, truncated or rolled back shows against it.
- `verify_journal` opens the file read-only and never writes. It checks SQLite's own structure
  (`quick_check`), the schema, that the file belongs to this terminal's key, every transaction row's
  hash and chain link (the per-row signatures too, when asked), the audit chain with its signatures,
  the authenticated head (its MAC, that it ends both chains, and its counters counted again), the deny
  list against its digest, the newest day's per-card totals, the checkpoint, the anchor file and the
  backend's acknowledgement.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from terminal.errors import JournalIntegrityError, StorageError
from terminal.journal.db import SCHEMA_VERSION, Database, open_read_only
from terminal.journal.deny import deny_digest
from terminal.journal.record import (
    AUDIT_SIGNED_FIELDS,
    GENESIS_HASH,
    VerifyReport,
    head_ack_digest,
    record_hash,
    utc_text,
)
from terminal.journal.session import Session
from terminal.journal.state import Head, StateBook
from terminal.journal.txns import TXN_COLUMNS, row_problem, stored_hash
from terminal.security import TerminalKeys, verify_signature

CHECKPOINT = "checkpoint"
BACKEND_ACK = "backend_ack"
ANCHOR_FILE = "anchor.json"
PAGE = 5000


def checkpoint_digest(body: Mapping[str, Any]) -> bytes:
    text = json.dumps({k: body[k] for k in ("terminal_id", "txn_seq", "txn_hash", "audit_seq", "audit_hash", "at")},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(b"walletpos checkpoint v1\x00" + text.encode()).digest()


def write_anchor(path: Path, anchor: Mapping[str, Any]) -> None:
    """Replace the anchor file atomically (owner-only)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(anchor, f, sort_keys=True, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_anchor(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise JournalIntegrityError(f"the anchor file {path} is unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise JournalIntegrityError(f"the anchor file {path} is not an object")
    return data


class Chain:
    """Checkpoints of the running terminal (they write: never used by `journal verify`)."""

    def __init__(self, database: Database, keys: TerminalKeys, state: StateBook,
                 session: Callable[..., AbstractContextManager[Session]]) -> None:
        self._d = database
        self._keys = keys
        self._state = state
        self._session = session
        self.anchor_path = database.path.with_name(ANCHOR_FILE)

    def last_checkpoint(self) -> dict[str, Any] | None:
        with self._d.reader() as db:
            value = self._state.guard(db, CHECKPOINT)
        return value if isinstance(value, dict) else None

    def checkpoint(self, now: datetime) -> dict[str, Any] | None:
        """Verify the rows appended since the last checkpoint and sign a new one (None when nothing is
        new). A row that does not verify puts the journal on hold (JournalIntegrityError raised)."""
        with self._session(now=now) as session:
            db = session.db
            last = self._state.guard(db, CHECKPOINT) or {}
            head = session.head
            if last and (last.get("txn_seq"), last.get("audit_seq")) == (head.txn_seq, head.audit_seq) \
                    and last.get("txn_hash") == head.txn_hash:
                return None
            try:
                start_seq = int(last.get("txn_seq", head.archived_seq))
                start_hash = str(last.get("txn_hash", head.archived_hash))
                if start_seq < head.archived_seq:
                    start_seq, start_hash = head.archived_seq, head.archived_hash
                elif start_seq > head.archived_seq:
                    row = db.execute("SELECT row_hash FROM txn WHERE seq = ?", (start_seq,)).fetchone()
                    if row is None or row[0].hex() != start_hash:
                        raise JournalIntegrityError(f"transaction row {start_seq}, verified at the last checkpoint, "
                                                    "was removed or changed")
                walked = walk_txn(db, start_seq, start_hash, self._keys.public_key_bytes, signatures=True,
                                  signed_here=self._d.signed_here)
                if walked.problem:
                    raise JournalIntegrityError(f"transaction row {walked.bad_seq}: {walked.problem}")
                if (walked.last_seq, walked.last_hash) != (head.txn_seq, head.txn_hash):
                    raise JournalIntegrityError("the transaction chain does not end at the journal's head")
                audit = walk_audit(db, self._keys.public_key_bytes, after=int(last.get("audit_seq", 0)),
                                   prev=str(last.get("audit_hash", GENESIS_HASH)))
                if audit.problem:
                    raise JournalIntegrityError(f"audit row {audit.bad_seq}: {audit.problem}")
            except JournalIntegrityError as exc:
                session.hold(exc.message)
                raise
            body: dict[str, Any] = {"terminal_id": self._d.terminal_id, "txn_seq": head.txn_seq,
                                    "txn_hash": head.txn_hash, "audit_seq": head.audit_seq,
                                    "audit_hash": head.audit_hash, "at": utc_text(now)}
            body["signature"] = self._keys.sign(checkpoint_digest(body)).hex()
            self._state.set_guard(db, CHECKPOINT, body)
            self._d.signed_here.clear()  # what they vouched for is behind the checkpoint now
            ack = self._state.guard(db, BACKEND_ACK)
        anchor = {"terminal_id": self._d.terminal_id, "public_key": self._keys.public_key_bytes.hex(),
                  "checkpoint": body, "backend_ack": ack}
        try:
            write_anchor(self.anchor_path, anchor)
        except OSError as exc:
            raise StorageError(f"cannot write {self.anchor_path}: {exc.strerror}") from None
        return body


# ------------------------------------------------------------------------------------------------
# walking the chains (read-only)


@dataclass
class Walk:
    checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    bad_seq: int | None = None
    problem: str | None = None
    unsigned: int = 0


def _pages(db: sqlite3.Connection, sql: str, after: int) -> Iterator[tuple[Any, ...]]:
    while True:
        rows = db.execute(sql, (after, PAGE)).fetchall()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


Progress = Callable[[int, int], None]  # (rows checked, rows to check)


def walk_txn(db: sqlite3.Connection, after: int, prev: str, public_key: bytes, *, signatures: bool,
             progress: Progress | None = None, total: int = 0,
             signed_here: Mapping[int, tuple[bytes, bytes]] | None = None) -> Walk:
    """Rows after `after` (whose hash is `prev`): contiguous, each linked to the one before, each hash
    recomputed from the stored values; signatures checked when asked, except for a row whose stored
    hash and signature are byte for byte the ones this process made (`signed_here`): that signature
    is valid by construction, and the recomputed hash still proves the content."""
    known = signed_here or {}
    walk = Walk(last_seq=after, last_hash=prev)
    expected = after + 1
    for values in _pages(db, f"SELECT {TXN_COLUMNS} FROM txn WHERE seq > ? ORDER BY seq LIMIT ?", after):
        seq = values[0]
        problem = None
        if seq != expected:
            later = isinstance(seq, int) and seq > expected
            problem = f"row {expected} is missing (next stored row is {seq})" if later else f"row {seq} is out of order"
        else:
            problem = row_problem(values)
            if problem is None and values[19].hex() != walk.last_hash:
                problem = "its previous-row hash does not match: rows were removed or reordered"
            if problem is None:
                try:
                    digest = stored_hash(values)
                except (TypeError, ValueError) as exc:
                    problem = f"it cannot be read ({exc})"
                else:
                    if digest != values[20]:
                        problem = "its content does not match its hash: the row was edited"
            if problem is None and values[21] is None:
                walk.unsigned += 1
            elif problem is None and signatures and known.get(seq) != (values[20], values[21]) \
                    and not verify_signature(public_key, values[21], values[20]):
                problem = "its signature is not the terminal's"
        if problem:
            walk.bad_seq, walk.problem = expected, problem
            return walk
        walk.checked += 1
        walk.last_seq, walk.last_hash = seq, values[20].hex()
        expected += 1
        if progress is not None and not walk.checked % PAGE:
            progress(walk.checked, total)
    return walk


def walk_audit(db: sqlite3.Connection, public_key: bytes, *, after: int = 0, prev: str = GENESIS_HASH) -> Walk:
    walk = Walk(last_seq=after, last_hash=prev)
    expected = after + 1
    for seq, term, at, event, actor, details, prev_hash, row_hash, signature in _pages(
            db, "SELECT seq, terminal_id, at, event, actor, details, prev_hash, row_hash, signature FROM audit "
                "WHERE seq > ? ORDER BY seq LIMIT ?", after):
        problem = None
        try:
            record = {"seq": seq, "terminal_id": term, "at": at, "event": event, "actor": actor,
                      "details": json.loads(details), "prev_hash": prev_hash}
            if seq != expected:
                problem = f"row {expected} is missing (next stored row is {seq})"
            elif prev_hash != walk.last_hash:
                problem = "its previous-row hash does not match: rows were removed or reordered"
            elif record_hash(record, AUDIT_SIGNED_FIELDS) != row_hash:
                problem = "its content does not match its hash: the row was edited"
            elif not verify_signature(public_key, bytes.fromhex(signature), bytes.fromhex(row_hash)):
                problem = "its signature is not the terminal's"
        except (ValueError, TypeError) as exc:
            problem = f"it cannot be read ({exc})"
        if problem:
            walk.bad_seq, walk.problem = expected, problem
            return walk
        walk.checked += 1
        walk.last_seq, walk.last_hash = seq, row_hash
        expected += 1
    return walk


# ------------------------------------------------------------------------------------------------
# verify (never writes)


@dataclass
class _Findings:
    problems: list[tuple[str | None, int | None, str]] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    def add(self, table: str | None, seq: int | None, text: str) -> None:
        self.problems.append((table, seq, text))


def _row_hash_at(db: sqlite3.Connection, seq: int) -> str | None:
    row = db.execute("SELECT row_hash FROM txn WHERE seq = ?", (seq,)).fetchone()
    return row[0].hex() if row and isinstance(row[0], bytes) else None


def _check_point(db: sqlite3.Connection, found: _Findings, what: str, point: Mapping[str, Any], head: Head,
                 key: bytes | None, public_key: bytes) -> None:
    """A checkpoint (signed by this terminal) or the backend's acknowledgement (signed by the backend,
    naming the terminal key it knows): signed by `key`, and the row it names is still there, unchanged."""
    try:
        seq, digest = int(point["txn_seq"]), str(point["txn_hash"])
        signature = bytes.fromhex(str(point["signature"]))
        if "terminal_key" in point:
            signed = head_ack_digest(str(point["terminal_id"]), seq, digest, str(point["terminal_key"]),
                                     str(point["at"]))
        else:
            signed = checkpoint_digest(point)
    except (KeyError, TypeError, ValueError):
        found.add("meta", None, f"the {what} is unreadable")
        return
    if key is not None and not verify_signature(key, signature, signed):
        found.add("meta", None, f"the {what} is not signed by the expected key")
    if "terminal_key" in point and point["terminal_key"] != public_key.hex():
        found.add("meta", None, f"the {what} names another terminal key: the key file was replaced")
    if seq > head.txn_seq:
        found.add("txn", head.txn_seq + 1, f"rows {head.txn_seq + 1} to {seq} were vouched for by the {what} "
                                           "but are missing: the journal went backwards")
    elif seq > head.archived_seq and _row_hash_at(db, seq) != digest:
        found.add("txn", seq, f"row {seq} differs from the one the {what} vouched for")


def verify_journal(path: Path, keys: TerminalKeys, *, signatures: bool = False, ack_key: bytes | None = None,
                   expect_journal: bool = False, progress: Progress | None = None) -> VerifyReport:
    """Check the journal file at `path` without writing to it (see the module docstring), with the
    anchor file beside it. `ack_key`: the backend's acknowledgement key (from the enrolment);
    `expect_journal`: the terminal has run before (its keys exist), so a missing journal is damage;
    `progress(checked, total)` is called every few thousand rows of the walk (a long check's progress)."""
    started = time.perf_counter()
    found = _Findings()
    txn = audit = Walk()
    public_key = keys.public_key_bytes
    try:
        anchor = read_anchor(path.with_name(ANCHOR_FILE))
    except JournalIntegrityError as exc:
        found.add(None, None, exc.message)
        anchor = None
    if not path.is_file() or path.stat().st_size == 0:
        if expect_journal or anchor is not None:
            found.add(None, None, f"the journal file {path} is missing or empty while this terminal has run "
                                  "before (keys or an anchor exist): it was deleted or truncated")
        else:
            found.checks["journal"] = "none yet"
        return _report(found, txn, audit, started)
    try:
        db = open_read_only(path)
    except sqlite3.OperationalError as exc:  # the disk, not the journal: nothing was checked (exit 4, not 5)
        raise StorageError(f"journal {path}: cannot be read to check it ({exc})", title="Cannot read") from None
    except sqlite3.Error as exc:
        found.add(None, None, f"the journal file cannot be opened ({exc})")
        return _report(found, txn, audit, started)
    try:
        with contextlib.closing(db):
            db.execute("BEGIN")  # one consistent snapshot for every check
            page_size, size = db.execute("PRAGMA page_size").fetchone()[0], path.stat().st_size
            if size % page_size:
                found.add(None, None, f"the journal file is {size} bytes, not a whole number of {page_size}-byte "
                                      "pages: it was truncated or extended")
            txn, audit = _verify_open(db, found, keys, signatures=signatures, anchor=anchor, ack_key=ack_key,
                                      public_key=public_key, progress=progress)
    except sqlite3.Error as exc:
        found.add(None, None, f"the journal file is damaged ({exc})")
    return _report(found, txn, audit, started)


def _verify_open(db: sqlite3.Connection, found: _Findings, keys: TerminalKeys, *, signatures: bool,
                 anchor: Mapping[str, Any] | None, ack_key: bytes | None, public_key: bytes,
                 progress: Progress | None = None) -> tuple[Walk, Walk]:
    quick = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
    found.checks["sqlite_quick_check"] = "ok" if quick == ["ok"] else quick[:5]
    if quick != ["ok"]:
        found.add(None, None, f"SQLite finds the file damaged: {'; '.join(map(str, quick[:3]))}")
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        found.add("meta", None, f"schema version {meta.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        return Walk(), Walk()
    if meta.get("public_key") != public_key.hex():
        found.add("meta", None, "the journal was written with another terminal key: the key file was replaced")
    if anchor is not None and anchor.get("public_key") not in (None, public_key.hex()):
        found.add("meta", None, "the terminal key differs from the one in the anchor file: the key file was replaced")
    state = StateBook(keys.state_mac_key)
    try:
        head = state.read_head(db)
    except JournalIntegrityError as exc:
        found.add("meta", None, exc.message)
        head = Head()
    if head.hold:
        found.add("meta", None, f"the terminal put its journal on hold: {head.hold}")
    txn = walk_txn(db, head.archived_seq, head.archived_hash, public_key, signatures=signatures, progress=progress,
                   total=head.txn_seq - head.archived_seq)
    if txn.problem:
        found.add("txn", txn.bad_seq, txn.problem)
    found.checks["transactions"] = {"verified": txn.checked, "unsigned": txn.unsigned,
                                    "signatures_checked": signatures, "archived_below": head.archived_seq}
    audit = walk_audit(db, public_key)
    if audit.problem:
        found.add("audit", audit.bad_seq, audit.problem)
    if not txn.problem and (txn.last_seq, txn.last_hash) != (head.txn_seq, head.txn_hash):
        found.add("txn", min(txn.last_seq, head.txn_seq) + 1,
                  f"the chain ends at row {txn.last_seq} but the journal's head says {head.txn_seq}: "
                  + ("rows were removed from the end" if txn.last_seq < head.txn_seq else "rows were added"))
    if not audit.problem and (audit.last_seq, audit.last_hash) != (head.audit_seq, head.audit_hash):
        found.add("audit", min(audit.last_seq, head.audit_seq) + 1,
                  f"the audit chain ends at row {audit.last_seq} but the journal's head says {head.audit_seq}")
    derived = state.derive_counters(db, head)
    if derived.sync_state_counts() != head.sync_state_counts() or derived.exposure != head.exposure \
            or (derived.approved, derived.declined) != (head.approved, head.declined):
        found.add("meta", None, "the journal's counters differ from its rows: sync states or decisions were edited")
    tokens = [r[0] for r in db.execute("SELECT card_token FROM deny_list")]
    if len(tokens) != head.deny_count or deny_digest(keys.state_mac_key, tokens) != head.deny_digest:
        found.add("deny_list", None, f"the deny list holds {len(tokens)} entries that differ from the "
                                     f"{head.deny_count} the journal vouches for")
    _check_card_days(db, found, state)
    try:
        checkpoint = state.guard(db, CHECKPOINT)
        ack = state.guard(db, BACKEND_ACK)
    except JournalIntegrityError as exc:
        found.add("meta", None, exc.message)
        checkpoint = ack = None
    if checkpoint:
        _check_point(db, found, "last checkpoint", checkpoint, head, public_key, public_key)
    if ack:
        _check_point(db, found, "backend's acknowledgement", ack, head, ack_key, public_key)
    if anchor is not None:
        for what, point in (("anchor file's checkpoint", anchor.get("checkpoint")),
                            ("anchor file's backend acknowledgement", anchor.get("backend_ack"))):
            if isinstance(point, dict):
                _check_point(db, found, what, point, head, public_key if "checkpoint" in what else ack_key,
                             public_key)
    found.checks["head"] = {"txn_seq": head.txn_seq, "audit_seq": head.audit_seq, "hold": head.hold}
    found.checks["resolved_holds"] = _resolved_holds(db)
    return txn, audit


def _resolved_holds(db: sqlite3.Connection, limit: int = 10) -> list[dict[str, Any]]:
    """The holds technicians resolved (newest first), from the signed audit chain: damage that was
    accepted stays on record with who accepted it and why."""
    found = []
    for seq, at, actor, details in db.execute(
            "SELECT seq, at, actor, details FROM audit WHERE event = 'integrity_hold_resolved' "
            "ORDER BY seq DESC LIMIT ?", (limit,)):
        try:
            info = json.loads(details)
        except ValueError:
            info = {}
        found.append({"audit_seq": seq, "at": at, "actor": actor, "hold": info.get("hold"), "note": info.get("note")})
    return found


class VerifyJob:
    """A full verify in a background thread (a million rows take tens of seconds): `progress` is the
    fraction walked so far, `report` the result once `done` is set."""

    def __init__(self, run: Callable[[Progress], VerifyReport]) -> None:
        self.checked = 0
        self.total = 0
        self.report: VerifyReport | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(run,), name="journal-verify", daemon=True)
        self._thread.start()

    def _run(self, run: Callable[[Progress], VerifyReport]) -> None:
        try:
            self.report = run(self._progress)
        except Exception as exc:  # the report says what stopped the check; the thread never dies silently
            problem = f"the check stopped: {exc}"
            self.report = VerifyReport(False, self.checked, 0, problem=problem, problems=(problem,))
        finally:
            self.done.set()

    def _progress(self, checked: int, total: int) -> None:
        self.checked, self.total = checked, total

    @property
    def progress(self) -> float:
        if self.done.is_set():
            return 1.0
        return min(1.0, self.checked / self.total) if self.total else 0.0

    def wait(self, timeout: float | None = None) -> VerifyReport | None:
        self.done.wait(timeout)
        return self.report


def _check_card_days(db: sqlite3.Connection, found: _Findings, state: StateBook) -> None:
    """The newest business day's per-card totals, counted again from the rows."""
    day = db.execute("SELECT MAX(business_date) FROM txn").fetchone()[0]
    if day is None:
        return
    rows = db.execute(
        "SELECT card_token, COUNT(CASE WHEN auth_mode IN ('offline', 'offline_fallback') THEN 1 END), "
        "COALESCE(SUM(CASE WHEN auth_mode IN ('offline', 'offline_fallback') THEN amount END), 0), "
        "COALESCE(SUM(amount), 0) FROM txn WHERE business_date = ? AND card_token IS NOT NULL "
        "AND decision = 'approved' AND kind IN ('sale', 'fare') GROUP BY card_token", (day,)).fetchall()
    stored = state.card_days(db, day)
    bad = 0
    for token, count, offline, amount in rows:
        try:
            totals = state.card_day(db, token, day)
        except JournalIntegrityError:
            bad += 1
            continue
        if (totals.offline_count, totals.offline_amount, totals.amount) != (count, offline, amount):
            bad += 1
    if bad or stored != len(rows):
        found.add("card_day", None, f"{max(bad, abs(stored - len(rows)))} card totals of {day} differ from the rows")


def _report(found: _Findings, txn: Walk, audit: Walk, started: float) -> VerifyReport:
    seconds = time.perf_counter() - started
    if not found.problems:
        return VerifyReport(True, txn.checked, audit.checked, checks=found.checks, seconds=seconds)
    table, seq, text = found.problems[0]
    prefix = f"{table} row {seq}: " if table in ("txn", "audit") and seq is not None else ""
    return VerifyReport(False, txn.checked, audit.checked, seq, table, prefix + text,
                        tuple(f"{t} row {s}: {p}" if t in ("txn", "audit") and s is not None else p
                              for t, s, p in found.problems), found.checks, seconds)
