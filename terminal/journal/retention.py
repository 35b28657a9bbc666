"""Retention: the journal keeps the rows the backend has not accepted and the last `keep_days`
business days; older rows leave the device behind the signed chain.

- Only rows that are covered by a verified, signed checkpoint, that carry their signature, that still
  hash and chain as they were signed (an edited row is evidence: it stays and the journal is put on
  hold), and that the backend holds (accepted, duplicate, declined after offline, or resolved by a technician) are
  archived, and only a leading run of them: the journal always starts at a row, never has holes, and
  an unsent or rejected row stops the run however old it is.
- Each step removes at most `batch` rows in its own short write session (a gate's tap waits for one
  step at most) and moves the chain's start in the authenticated head: `archived_seq` and the hash
  of the last archived row, from which `journal verify` and every checkpoint walk on. The head's
  counters are reduced by what left, so they keep describing the rows on the device.
- An audit row (signed) records each run: which rows, up to which hash, the cutoff day. Per-card day
  totals, used wallet codes and closed merchant codes older than the cutoff go with them.
- The file is created with `auto_vacuum = INCREMENTAL`: the freed pages are given back to the file
  system a bounded number at a time.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from terminal.journal.db import Database
from terminal.journal.session import Session
from terminal.journal.state import Head
from terminal.journal.txns import TXN_COLUMNS, row_problem, stored_hash

log = logging.getLogger("walletpos.journal")

HELD = ("accepted", "duplicate", "declined_after_offline", "resolved")  # the backend holds these rows
BATCH = 1000
VACUUM_PAGES = 2000


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    archived: int  # rows that left the device in this run
    through_seq: int  # the journal now starts after this row
    cutoff: str  # rows of business days before this one may leave
    stopped_by: str | None  # why the run stopped before the cutoff (an unsent row, the checkpoint, a limit)
    freed_pages: int

    def to_dict(self) -> dict[str, object]:
        return {"archived": self.archived, "through_seq": self.through_seq, "cutoff": self.cutoff,
                "stopped_by": self.stopped_by, "freed_pages": self.freed_pages}


class Retention:
    def __init__(self, database: Database, session: Callable[..., AbstractContextManager[Session]],
                 checkpoint_seq: Callable[[], int]) -> None:
        self._d = database
        self._session = session
        self._checkpoint_seq = checkpoint_seq

    def archive(self, *, keep_days: int, today: date, now: datetime, max_rows: int | None = None,
                batch: int = BATCH) -> ArchiveResult:
        """Archive what may leave (see the module docstring), at most `max_rows` rows in this call.
        The caller signs pending rows and writes a checkpoint first (`Journal.archive` does)."""
        cutoff = (today - timedelta(days=keep_days)).isoformat()
        limit = self._checkpoint_seq()
        archived, first, stopped, last = 0, None, None, None
        while max_rows is None or archived < max_rows:
            step = batch if max_rows is None else min(batch, max_rows - archived)
            with self._session(now=now) as session:
                moved, stopped, through = self._step(session, cutoff, limit, step)
                if moved:
                    first = first if first is not None else session.head.archived_seq - moved + 1
                    last = through
                archived += moved
            if stopped or not moved:
                break
        else:
            stopped = "limit"
        head_seq = last if last is not None else 0
        if archived:
            with self._session(now=now) as session:
                db = session.db
                db.execute("DELETE FROM state WHERE key >= 'card|' AND key < ?", (f"card|{cutoff}",))
                db.execute("DELETE FROM used_codes WHERE used_at < ?", (cutoff,))
                db.execute("DELETE FROM merchant_codes WHERE closed_at IS NOT NULL AND closed_at < ?", (cutoff,))
                head_seq = session.head.archived_seq
                session.audit("journal_archived", now=now, details={
                    "first_seq": first, "last_seq": head_seq, "rows": archived, "last_hash": session.head.archived_hash,
                    "cutoff": cutoff, "stopped_by": stopped})
            log.info("journal: %d rows archived (through row %d, days before %s)", archived, head_seq, cutoff)
        freed = self.give_back_space() if archived else 0
        return ArchiveResult(archived, head_seq, cutoff, stopped if stopped != "cutoff" else None, freed)

    def _step(self, session: Session, cutoff: str, limit: int, batch: int) -> tuple[int, str | None, int]:
        """Archive the leading run of at most `batch` rows that may leave; returns (rows, why it
        stopped or None, the last archived seq)."""
        head: Head = session.head
        db = session.db
        if head.hold:
            return 0, "hold", head.archived_seq  # integrity in doubt: nothing leaves until a technician looked
        rows = db.execute(f"SELECT {TXN_COLUMNS} FROM txn WHERE seq > ? ORDER BY seq LIMIT ?",
                          (head.archived_seq, batch)).fetchall()
        run: list[tuple[int, str, bytes, str]] = []
        stopped = None
        expected, prev = head.archived_seq + 1, bytes.fromhex(head.archived_hash)
        for values in rows:
            seq, day, decision, row_hash, state = values[0], values[4], values[12], values[20], values[22]
            if seq != expected:
                stopped = "gap"  # never archive across a hole: verify reports it
            elif seq > limit:
                stopped = "checkpoint"
            elif day >= cutoff:
                stopped = "cutoff"
            elif state not in HELD:
                stopped = "unsent"
            elif values[21] is None:
                stopped = "unsigned"
            if stopped:
                break
            # what leaves must still be what was signed: an edited row is evidence, kept and held
            problem = row_problem(values) or (
                "its previous-row hash does not match" if values[19] != prev else
                "its content does not match its hash" if stored_hash(values) != row_hash else None)
            if problem:
                session.hold(f"transaction row {seq}, due to be archived: {problem}")
                return 0, "damage", head.archived_seq
            run.append((seq, decision, row_hash, state))
            expected, prev = expected + 1, row_hash
        if not rows:
            stopped = "end"
        if not run:
            return 0, stopped or "end", head.archived_seq
        last_seq, last_hash = run[-1][0], run[-1][2]
        approved = sum(1 for r in run if r[1] == "approved")
        by_state = {name: sum(1 for r in run if r[3] == name) for name in HELD}
        db.execute("DELETE FROM txn WHERE seq > ? AND seq <= ?", (head.archived_seq, last_seq))
        db.execute("DELETE FROM sealed_card WHERE seq <= ?", (last_seq,))  # rows written off may still have theirs
        session.update_head(
            archived_seq=last_seq, archived_hash=last_hash.hex(), approved=head.approved - approved,
            declined=head.declined - (len(run) - approved), accepted=head.accepted - by_state["accepted"],
            duplicate=head.duplicate - by_state["duplicate"],
            declined_after_offline=head.declined_after_offline - by_state["declined_after_offline"],
            resolved=head.resolved - by_state["resolved"])
        return len(run), stopped, last_seq

    def give_back_space(self, pages: int = VACUUM_PAGES) -> int:
        """Return up to `pages` free pages to the file system (incremental vacuum, one short write)."""
        try:
            with self._d.lock:  # the writer connection, in its own short transaction
                db = self._d.db
                free = db.execute("PRAGMA freelist_count").fetchone()[0]
                # executescript steps the pragma to its end (one page per step); execute() stops after one
                db.executescript(f"PRAGMA incremental_vacuum({int(pages)});")
                return int(free - db.execute("PRAGMA freelist_count").fetchone()[0])
        except sqlite3.Error as exc:
            log.warning("journal: free pages not given back: %s", exc)
            return 0


__all__ = ["HELD", "ArchiveResult", "Retention"]
