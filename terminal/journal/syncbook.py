"""Sync bookkeeping: which rows the backend has, what it answered, what is still at risk."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from terminal.core.money import Currency, Money
from terminal.journal.db import Database
from terminal.journal.record import SYNC_STATES, TxnRow, utc_text
from terminal.journal.txns import Transactions


class SyncBook:
    def __init__(self, database: Database, txns: Transactions):
        self._d = database
        self._txns = txns

    def unsynced_exposure(self, cur: Currency) -> Money:
        """Offline-approved sales and fares the backend has not yet accepted."""
        rows = self._d.read(
            "SELECT COALESCE(SUM(amount), 0) FROM txn WHERE sync_state = 'pending' "
            "AND decision = 'approved' AND auth_mode IN ('offline', 'offline_fallback') "
            "AND kind IN ('sale', 'fare') AND currency = ?",
            (cur.alpha,),
        )
        return Money(rows[0][0], cur)

    def pending(self, limit: int = 500, *, after_seq: int = 0) -> list[TxnRow]:
        return self._txns.rows("WHERE sync_state = 'pending' AND seq > ?", (after_seq,), limit=limit)

    def queue_summary(self) -> dict[str, Any]:
        rows = self._d.read(
            "SELECT COUNT(*), MIN(created_at) FROM txn WHERE sync_state = 'pending'"
        )
        count, oldest = rows[0]
        return {"pending": count, "oldest_pending_at": oldest}


    def set_sync_results(self, results: Sequence[tuple[str, str, str | None]], *, now: datetime) -> None:
        """Record backend answers: (transaction id, sync state, reason)."""
        for _, state, _ in results:
            if state not in SYNC_STATES:
                raise ValueError(f"unknown sync state {state!r}")
        try:
            with self._d.write() as db:
                db.executemany(
                    "UPDATE txn SET sync_state = ?, sync_reason = ?, synced_at = ?, sync_error = NULL "
                    "WHERE id = ?",
                    [(state, reason, utc_text(now), txn_id) for txn_id, state, reason in results],
                )
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "record sync results") from None

    def note_sync_attempt(self, ids: Sequence[str], error: str | None) -> None:
        try:
            with self._d.write() as db:
                db.executemany(
                    "UPDATE txn SET sync_attempts = sync_attempts + 1, sync_error = ? WHERE id = ?",
                    [(error, i) for i in ids],
                )
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "record a sync attempt") from None

    def sync_state_counts(self) -> dict[str, int]:
        """How many rows are in each sync state (pending, accepted, duplicate, declined_after_offline, rejected)."""
        counts = dict.fromkeys(SYNC_STATES, 0)
        counts.update(self._d.read("SELECT sync_state, COUNT(*) FROM txn GROUP BY sync_state"))
        return counts

    def requeue_for_sync(self, ranges: Sequence[tuple[int, int]]) -> int:
        """Mark rows the backend reports missing (sequence ranges, inclusive) as pending again, if this
        terminal took them for delivered (accepted or duplicate). Returns how many were requeued."""
        try:
            with self._d.write() as db:
                return sum(
                    db.execute("UPDATE txn SET sync_state = 'pending', synced_at = NULL WHERE seq BETWEEN ? AND ? "
                               "AND sync_state IN ('accepted', 'duplicate')", (first, last)).rowcount
                    for first, last in ranges
                )
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "requeue rows for sync") from None

