"""Sync bookkeeping: which rows the backend has, what it answered, and what is still at risk.

The sync state of each row is an unsigned column (it changes after the row is written); the counters
the terminal decides with (queue depth, unsynced exposure, rows per state) live in the journal's
authenticated head and change in the same write session as the rows' states, so editing a row's
state by hand changes no decision: the exposure of a row counts until the backend accepted it, or a
technician resolved it. Once the backend holds a row, its sealed card data is dropped (the signed
record keeps its SHA-256).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from terminal.core.money import Currency, Money
from terminal.journal.db import Database
from terminal.journal.record import SYNC_STATES, TxnRow, utc_text
from terminal.journal.session import Session
from terminal.journal.state import EXPOSED_STATES, OFFLINE_MODES, SALE_KINDS, Head
from terminal.journal.txns import Transactions

DELIVERED = ("accepted", "duplicate", "declined_after_offline")  # states in which the backend holds the row
_COUNTED = {"pending": "pending", "accepted": "accepted", "duplicate": "duplicate",
            "declined_after_offline": "declined_after_offline", "rejected": "rejected", "resolved": "resolved"}


def _moved(head: Head, changes: Sequence[tuple[str, str, int, bool]]) -> dict[str, int]:
    """Counter values after rows moved (old state, new state, amount, exposed when in an exposed state)."""
    counts = {name: getattr(head, name) for name in _COUNTED.values()}
    exposure = head.exposure
    for old, new, amount, offline_sale in changes:
        counts[_COUNTED[old]] -= 1
        counts[_COUNTED[new]] += 1
        if offline_sale:
            exposure += (amount if new in EXPOSED_STATES else 0) - (amount if old in EXPOSED_STATES else 0)
    return {**counts, "exposure": exposure}


class SyncBook:
    def __init__(self, database: Database, txns: Transactions, head: Callable[[], Head],
                 session: Callable[..., AbstractContextManager[Session]]) -> None:
        self._d = database
        self._txns = txns
        self._head = head
        self._session = session

    # -- reads ----------------------------------------------------------------------------------

    def unsynced_exposure(self, cur: Currency) -> Money:
        """Offline-approved sales and fares the backend has not accepted (pending or rejected)."""
        return Money(self._head().exposure, cur)

    def pending(self, limit: int = 500, *, after_seq: int = 0) -> list[TxnRow]:
        return self._txns.rows("WHERE sync_state = 'pending' AND seq > ?", (after_seq,), limit=limit)

    def queue_summary(self) -> dict[str, Any]:
        oldest = self._d.read("SELECT created_at FROM txn WHERE sync_state = 'pending' ORDER BY seq LIMIT 1")
        return {"pending": self._head().pending, "oldest_pending_at": oldest[0][0] if oldest else None}

    def sync_state_counts(self) -> dict[str, int]:
        """How many rows are in each sync state."""
        return self._head().sync_state_counts()

    def rejected(self, limit: int = 100) -> list[TxnRow]:
        return self._txns.rows("WHERE sync_state = 'rejected'", order="seq", limit=limit)

    # -- writes ---------------------------------------------------------------------------------

    def _change_states(self, session: Session, rows: list[tuple[Any, ...]], new_state: str) -> list[tuple[str, str, int,
                                                                                                        bool]]:
        return [(state, new_state, amount, decision == "approved" and kind in SALE_KINDS and mode in OFFLINE_MODES)
                for _, state, amount, decision, kind, mode in rows]

    def set_sync_results(self, results: Sequence[tuple[str, str, str | None]], *, now: datetime) -> None:
        """Record backend answers: (transaction id, sync state, reason)."""
        for _, state, _ in results:
            if state not in SYNC_STATES or state == "resolved":
                raise ValueError(f"unknown sync state {state!r}")
        by_id = {txn_id: (state, reason) for txn_id, state, reason in results}
        try:
            with self._session(now=now) as session:
                db = session.db
                changes: list[tuple[str, str, int, bool]] = []
                for chunk in range(0, len(results), 500):
                    ids = [r[0] for r in results[chunk:chunk + 500]]
                    stored = db.execute(
                        f"SELECT id, sync_state, amount, decision, kind, auth_mode FROM txn WHERE id IN "
                        f"({', '.join('?' * len(ids))})", ids).fetchall()
                    for row in stored:
                        new_state, _ = by_id[row[0]]
                        if row[1] != new_state:
                            changes.extend(self._change_states(session, [row], new_state))
                db.executemany(
                    "UPDATE txn SET sync_state = ?, sync_reason = ?, synced_at = ?, sync_error = NULL WHERE id = ?",
                    [(state, reason, utc_text(now), txn_id) for txn_id, state, reason in results])
                # the backend holds what it accepted: the sealed card data goes (its digest stays signed)
                db.executemany("DELETE FROM sealed_card WHERE seq = (SELECT seq FROM txn WHERE id = ?)",
                               [(txn_id,) for txn_id, state, _ in results if state in DELIVERED])
                if changes:
                    session.update_head(**_moved(session.head, changes))
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "record sync results") from None

    def note_sync_attempt(self, ids: Sequence[str], error: str | None) -> None:
        try:
            with self._d.write() as db:
                db.executemany("UPDATE txn SET sync_attempts = sync_attempts + 1, sync_error = ? WHERE id = ?",
                               [(error, i) for i in ids])
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "record a sync attempt") from None

    def requeue_for_sync(self, ranges: Sequence[tuple[int, int]], *, now: datetime) -> int:
        """Mark rows the backend reports missing (sequence ranges, inclusive) as pending again, if this
        terminal took them for delivered (accepted or duplicate). Returns how many were requeued."""
        try:
            with self._session(now=now) as session:
                db = session.db
                moved: list[tuple[Any, ...]] = []
                for first, last in ranges:
                    moved += db.execute(
                        "SELECT id, sync_state, amount, decision, kind, auth_mode FROM txn WHERE seq BETWEEN ? AND ? "
                        "AND sync_state IN ('accepted', 'duplicate')", (first, last)).fetchall()
                if moved:
                    db.executemany("UPDATE txn SET sync_state = 'pending', synced_at = NULL WHERE id = ?",
                                   [(r[0],) for r in moved])
                    session.update_head(**_moved(session.head, self._change_states(session, moved, "pending")))
                return len(moved)
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "requeue rows for sync") from None

    def record_success(self, at: datetime) -> None:
        """A sync cycle succeeded at `at`: the offline rules' sync age counts from here."""
        with self._session(now=at) as session:
            session.update_head(last_sync_ok_at=utc_text(at))

    def resolve_rejected(self, seqs: Sequence[int], *, now: datetime, actor: str, note: str) -> int:
        """A technician writes off rows the backend rejected (after taking them up with support): they
        stop counting as exposure; an audit row records who did it and why."""
        with self._session(now=now) as session:
            db = session.db
            rows = db.execute(
                f"SELECT id, sync_state, amount, decision, kind, auth_mode FROM txn WHERE sync_state = 'rejected' "
                f"AND seq IN ({', '.join('?' * len(seqs))})", list(seqs)).fetchall() if seqs else []
            if rows:
                db.executemany("UPDATE txn SET sync_state = 'resolved', synced_at = ? WHERE id = ?",
                               [(utc_text(now), r[0]) for r in rows])
                session.update_head(**_moved(session.head, self._change_states(session, rows, "resolved")))
                session.audit("rejected_rows_resolved", now=now, actor=actor,
                              details={"ids": [r[0] for r in rows], "note": note[:300]})
            return len(rows)
