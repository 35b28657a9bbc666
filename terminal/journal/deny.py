"""The deny list: card and wallet tokens refused at this terminal (from the backend, or local)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from terminal.journal.db import Database
from terminal.journal.record import utc_text


class DenyList:
    def __init__(self, database: Database):
        self._d = database

    def contains(self, card_token: str | None) -> bool:
        if not card_token:
            return False
        return bool(self._d.read("SELECT 1 FROM deny_list WHERE card_token = ?", (card_token,)))

    def version(self) -> int:
        return int(self._d.meta("deny_list_version") or 0)

    def size(self) -> int:
        return self._d.read("SELECT COUNT(*) FROM deny_list")[0][0]

    def apply_delta(
        self, version: int, added: Sequence[tuple[str, str]], removed: Sequence[str], *, now: datetime
    ) -> None:
        """Apply a backend deny-list delta (tokens with reasons added, tokens removed) atomically."""
        try:
            with self._d.write() as db:
                db.executemany(
                    "INSERT INTO deny_list (card_token, reason, source, added_at, version) "
                    "VALUES (?, ?, 'backend', ?, ?) ON CONFLICT(card_token) DO UPDATE SET "
                    "reason = excluded.reason, source = 'backend', version = excluded.version",
                    [(token, reason, utc_text(now), version) for token, reason in added],
                )
                db.executemany("DELETE FROM deny_list WHERE card_token = ?", [(t,) for t in removed])
                db.execute("UPDATE meta SET value = ? WHERE key = 'deny_list_version'", (str(version),))
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "update the deny list") from None

    def entries(self, source: str | None = None) -> list[tuple[str, str, str]]:
        """(card token, reason, source) of every entry, or of one source ('backend' or 'local')."""
        if source is None:
            return self._d.read("SELECT card_token, reason, source FROM deny_list ORDER BY card_token")
        return self._d.read("SELECT card_token, reason, source FROM deny_list WHERE source = ? ORDER BY card_token",
                          (source,))

    def deny_locally(self, card_token: str, reason: str, *, now: datetime) -> None:
        """Deny a token on this terminal (e.g. after a decline following an offline approval)."""
        try:
            with self._d.write() as db:
                db.execute(
                    "INSERT INTO deny_list (card_token, reason, source, added_at, version) "
                    "VALUES (?, ?, 'local', ?, 0) ON CONFLICT(card_token) DO NOTHING",
                    (card_token, reason, utc_text(now)),
                )
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "update the deny list") from None

