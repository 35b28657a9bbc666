"""The journal: a SQLite file that keeps every transaction, the deny list and an audit log.

A few small repositories over one file (`terminal.journal.db.Database`), one per aggregate:

- `txns` (`Transactions`): hash-chained transaction rows, signed shortly after they are written;
- `sync` (`SyncBook`): which rows the backend has and what it answered;
- `operators`, `issuer_keys` (and used wallet codes), `merchant_codes`, `deny` (the deny list);
- `audit` (`AuditLog`): its own signed chain;
- `chain` (`Chain`): signed checkpoints; `terminal.journal.chain.verify_journal` checks a file.

What decisions read (the chain heads, the counters, per-card day totals, the deny list's digest, the
last sync, the integrity hold) is the journal's authenticated state (`terminal.journal.state`),
changed in the same write session as the rows (`Journal.session()`, `terminal.journal.session`).
The signed record itself is the pure `terminal.journal.record`, which the sandbox backend uses to
check what terminals send. No clear card number is ever given to this package.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from terminal.errors import JournalIntegrityError, StorageError
from terminal.journal.audit import AuditLog
from terminal.journal.chain import (
    ANCHOR_FILE,
    BACKEND_ACK,
    CHECKPOINT,
    Chain,
    Progress,
    VerifyJob,
    read_anchor,
    verify_journal,
)
from terminal.journal.db import SCHEMA, SCHEMA_VERSION, Database
from terminal.journal.deny import DenyList, deny_digest
from terminal.journal.ids import new_txn_id
from terminal.journal.issuer_keys import IssuerKeys
from terminal.journal.merchant_codes import MerchantCodes
from terminal.journal.operators import OperatorStore
from terminal.journal.record import (
    AUDIT_SIGNED_FIELDS,
    GENESIS_HASH,
    SIGNED_FIELDS,
    SYNC_STATES,
    CodeClaim,
    NewTransaction,
    PayerTotals,
    TxnRow,
    VerifyReport,
    canonical_bytes,
    canonical_txn_parts,
    parse_utc,
    record_hash,
    utc_text,
)
from terminal.journal.retention import ArchiveResult, Retention
from terminal.journal.session import Session
from terminal.journal.state import COUNTERS, CardDay, Head, StateBook
from terminal.journal.syncbook import SyncBook
from terminal.journal.txns import Transactions
from terminal.security import TerminalKeys

log = logging.getLogger("walletpos.journal")


class SessionTx:
    """`with journal.session() as s:` (a class, not a generator: it runs on every payment)."""

    __slots__ = ("_journal", "_now", "_session")

    def __init__(self, journal: Journal, now: datetime) -> None:
        self._journal = journal
        self._now = now
        self._session: Session | None = None

    def __enter__(self) -> Session:
        journal = self._journal
        d = journal.db
        d.lock.acquire()
        try:
            d.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            d.lock.release()
            raise d.fail(exc, "start a write") from None
        except BaseException:
            d.lock.release()
            raise
        try:
            self._session = Session(d.db, terminal_id=journal.terminal_id, keys=journal._keys, state=journal.state,
                                    deny=journal.deny, now=self._now)
        except BaseException:
            self._abort()
            raise
        return self._session

    def _abort(self) -> None:
        d = self._journal.db
        try:
            if d.db.in_transaction:
                d.db.execute("ROLLBACK")
        finally:
            self._journal.state.forget()
            d.lock.release()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        d = self._journal.db
        session = self._session
        if exc_type is not None or session is None:
            self._abort()
            if isinstance(exc, sqlite3.Error):  # full disk, a read-only file, a duplicate id: say what to do
                raise d.fail(exc, "record") from None
            return
        try:
            version = session.finish()
            d.db.execute("COMMIT")
        except sqlite3.Error as error:
            self._abort()
            raise d.fail(error, "record") from None
        except BaseException:
            self._abort()
            raise
        self._journal.state.remember(version, session.head)
        d.lock.release()


class Journal:
    """The journal file and its repositories; safe to share between threads of one process."""

    def __init__(self, path: Path, keys: TerminalKeys, terminal_id: str, *, now: datetime | None = None):
        self.db = Database(path, terminal_id=terminal_id, public_key_hex=keys.public_key_bytes.hex(), now=now)
        self.path = self.db.path
        self.terminal_id = terminal_id
        self._keys = keys
        self.state = StateBook(keys.state_mac_key)
        self.deny = DenyList(self.db, keys.state_mac_key)
        self.txns = Transactions(self.db, keys, self.state, self.session)
        self.sync = SyncBook(self.db, self.txns, self.head, self.session)
        self.operators = OperatorStore(self.db)
        self.issuer_keys = IssuerKeys(self.db, self.state, self.session)
        self.merchant_codes = MerchantCodes(self.db)
        self.audit = AuditLog(self.db, self.session)
        self.chain = Chain(self.db, keys, self.state, self.session)
        self.retention = Retention(self.db, self.session, self._checkpoint_seq)
        self._check_anchor(now or datetime.now(UTC))

    def _checkpoint_seq(self) -> int:
        last = self.chain.last_checkpoint()
        return int(last.get("txn_seq", 0)) if last else 0

    def _check_anchor(self, now: datetime) -> None:
        """At open: the anchor file beside the journal (the last checkpoint and the backend's
        acknowledgement, written outside the database) must not be ahead of the journal. A journal that
        went backwards (deleted and made anew, restored from an old copy) is put on hold at once."""
        try:
            anchor = read_anchor(self.anchor_path)
        except JournalIntegrityError as exc:
            self.hold(exc.message, now=now)
            return
        if anchor is None:
            return
        try:
            head = self.head()
        except JournalIntegrityError:
            return  # the first session finds it and holds
        for what in ("checkpoint", "backend_ack"):
            point = anchor.get(what)
            if not isinstance(point, dict):
                continue
            seq, digest = point.get("txn_seq"), point.get("txn_hash")
            if not isinstance(seq, int) or not isinstance(digest, str):
                continue
            if seq > head.txn_seq:
                self.hold(f"the journal went backwards: the anchor file's {what.replace('_', ' ')} vouches for rows "
                          f"up to {seq}, the journal ends at {head.txn_seq} (deleted, replaced or restored from an "
                          "old copy)", now=now)
                return
            if seq > head.archived_seq:
                rows = self.txns.rows("WHERE seq = ?", (seq,))
                if rows and rows[0].row_hash != digest:
                    self.hold(f"row {seq} differs from the one the anchor file's {what.replace('_', ' ')} vouches "
                              "for: the journal was rewritten", now=now)
                    return

    @property
    def anchor_path(self) -> Path:
        return self.path.with_name(ANCHOR_FILE)

    # -- write sessions -----------------------------------------------------------------------------

    def session(self, *, now: datetime | None = None) -> SessionTx:
        """One write transaction: what a decision reads and what it appends, together (BEGIN
        IMMEDIATE: no other thread or process writes in between). Commits when the block ends."""
        return SessionTx(self, now or datetime.now(UTC))

    def head(self) -> Head:
        """The authenticated head as committed (a reader: never waits for the writer); raises
        JournalIntegrityError when it fails its MAC."""
        with self.db.reader() as db:
            return self.state.read_head(db)

    def integrity_problem(self) -> str | None:
        """Why offline approvals are off (the hold, or a head that fails its MAC), or None."""
        try:
            return self.head().hold
        except JournalIntegrityError as exc:
            return exc.message
        except StorageError as exc:
            return exc.message

    def verify(self, *, signatures: bool = False, ack_key: bytes | None = None,
               progress: Progress | None = None) -> VerifyReport:
        """`terminal.journal.chain.verify_journal` on this journal's file (read-only)."""
        return verify_journal(self.path, self._keys, signatures=signatures, ack_key=ack_key, expect_journal=True,
                              progress=progress)

    def verify_in_background(self, *, signatures: bool = False, ack_key: bytes | None = None) -> VerifyJob:
        """The full verify in its own thread, with its progress (the TUI's diagnostics, a technician's sign-in)."""
        return VerifyJob(lambda progress: self.verify(signatures=signatures, ack_key=ack_key, progress=progress))

    # -- settings -------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        return self.db.meta(key)

    def set_meta(self, values: Mapping[str, str]) -> None:
        self.db.set_meta(values)

    @property
    def installed_at(self) -> datetime:
        value = self.db.meta("installed_at")
        assert value is not None
        return parse_utc(value)

    def guard(self, key: str) -> Any:
        """An authenticated value (the checkpoint, the backend's acknowledgement)."""
        with self.db.reader() as db:
            return self.state.guard(db, key)

    def set_guard(self, key: str, value: Mapping[str, Any] | None, *, now: datetime) -> None:
        with self.session(now=now) as session:
            self.state.set_guard(session.db, key, value)

    def hold(self, problem: str, *, now: datetime) -> None:
        """Turn offline approvals off with `problem` as the reason, until a technician resolves it."""
        with self.session(now=now) as session:
            session.hold(problem)

    # -- the deny list (its entries and the authenticated size and digest change together) ---------

    def apply_deny_delta(self, version: int, added: list[tuple[str, str]] | tuple[tuple[str, str], ...],
                         removed: list[str] | tuple[str, ...], *, now: datetime, source: str = "backend") -> None:
        """Apply a deny-list change (tokens with reasons added, tokens removed) atomically."""
        try:
            with self.session(now=now) as session:
                head = session.head
                new, gone = self.deny.apply_in(session.db, added, removed, source=source, version=version, now=now)
                session.update_head(deny_version=version if source == "backend" else head.deny_version,
                                    deny_count=head.deny_count + len(new) - len(gone),
                                    deny_digest=self.deny.changed_digest(head.deny_digest, new, gone))
        except sqlite3.Error as exc:
            raise self.db.fail(exc, "update the deny list") from None

    def deny_locally(self, card_token: str, reason: str, *, now: datetime) -> None:
        """Deny a token on this terminal (e.g. after a decline following an offline approval)."""
        self.apply_deny_delta(0, [(card_token, reason)], [], now=now, source="local")

    # -- upkeep ---------------------------------------------------------------------------------

    def housekeeping(self, now: datetime) -> None:
        """Sign the rows not signed yet and write a checkpoint over what was appended since the last;
        then copy the WAL back into the file, off the payments' path (`Database.checkpoint_wal`)."""
        try:
            self.txns.sign_pending()
        except JournalIntegrityError as exc:
            with self.session(now=now) as session:
                session.hold(exc.message)
            raise
        self.chain.checkpoint(now)
        self.db.checkpoint_wal()

    def archive(self, *, keep_days: int, today: date, now: datetime, max_rows: int | None = None) -> ArchiveResult:
        """Retention (terminal/journal/retention.py): rows the backend holds, older than `keep_days`
        business days, leave the device behind a fresh signed checkpoint; then another checkpoint
        vouches for the new start."""
        self.housekeeping(now)
        result = self.retention.archive(keep_days=keep_days, today=today, now=now, max_rows=max_rows)
        if result.archived:
            self.chain.checkpoint(now)
        return result

    def resolve_hold(self, *, actor: str, note: str, now: datetime) -> str | None:
        """A technician resolves the integrity hold: the counters and today's card totals are counted
        again from the rows as they are, the deny list is fetched whole from the backend at the next
        sync, a new checkpoint is signed at the current head, and an audit row records who did it,
        why, and what the hold was. The damage itself stays visible to `journal verify`. Returns the
        hold that was resolved (None when there was none)."""
        with self.session(now=now) as session:
            was = session.head.hold
            derived = self.state.derive_counters(session.db, session.head)
            tokens = [r[0] for r in session.db.execute("SELECT card_token FROM deny_list")]
            session.update_head(**{name: getattr(derived, name) for name in COUNTERS}, deny_version=0,
                                deny_count=len(tokens), deny_digest=deny_digest(self._keys.state_mac_key, tokens),
                                hold=None)
            day = session.db.execute("SELECT MAX(business_date) FROM txn").fetchone()[0]
            if day:
                self.state.rebuild_card_days(session.db, day)
            self.state.set_guard(session.db, CHECKPOINT, None)
            session.audit("integrity_hold_resolved", now=now, actor=actor,
                          details={"hold": was, "note": note[:300]})
        self.chain.checkpoint(now)
        return was

    def close(self) -> None:
        with self.db.lock:
            if self.db.closed:
                return
            try:
                self.housekeeping(datetime.now(UTC))
            except (StorageError, JournalIntegrityError) as exc:  # read-only or full disk, or a hold
                log.warning("journal not signed or checkpointed on close: %s", exc)
            self.db.close()


__all__ = [
    "AUDIT_SIGNED_FIELDS",
    "BACKEND_ACK",
    "CHECKPOINT",
    "GENESIS_HASH",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SIGNED_FIELDS",
    "SYNC_STATES",
    "ArchiveResult",
    "CardDay",
    "CodeClaim",
    "Head",
    "Journal",
    "NewTransaction",
    "PayerTotals",
    "Session",
    "TxnRow",
    "VerifyJob",
    "VerifyReport",
    "canonical_bytes",
    "canonical_txn_parts",
    "new_txn_id",
    "parse_utc",
    "record_hash",
    "utc_text",
]
