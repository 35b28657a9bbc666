"""Support bundles: support asks a terminal for one (the flag in its heartbeat answers), the terminal
sends it (`POST /v1/support-bundles`), and it is kept under a short ticket id that the technician
reads out on the phone."""

from __future__ import annotations

import secrets
from typing import Any

from .database import Database

TICKET_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O: read out without confusion
TICKET_LENGTH = 6


class Support:
    def __init__(self, db: Database):
        self.db = db

    def request(self, terminal_id: str, note: str = "") -> str:
        """Ask `terminal_id` for a bundle at its next heartbeat; returns when it was asked."""
        at = self.db.now_text()
        with self.db.transaction() as db:
            db.execute("INSERT INTO support_requests (terminal_id, requested_at, note) VALUES (?, ?, ?) "
                       "ON CONFLICT(terminal_id) DO UPDATE SET requested_at = excluded.requested_at, "
                       "note = excluded.note", (terminal_id, at, note))
        return at

    def requested(self, terminal_id: str) -> bool:
        return self.db.one("SELECT 1 FROM support_requests WHERE terminal_id = ?", (terminal_id,)) is not None

    def receive(self, terminal_id: str, reason: str, file_name: str, sha256: str, data: bytes) -> dict[str, Any]:
        """Keep a bundle under a new ticket id and clear the terminal's request."""
        at = self.db.now_text()
        with self.db.transaction() as db:
            while True:
                ticket = "SB-" + "".join(secrets.choice(TICKET_ALPHABET) for _ in range(TICKET_LENGTH))
                if db.execute("SELECT 1 FROM support_bundles WHERE ticket = ?", (ticket,)).fetchone() is None:
                    break
            db.execute("INSERT INTO support_bundles (ticket, terminal_id, received_at, reason, file_name, sha256, "
                       "size, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (ticket, terminal_id, at, reason, file_name, sha256, len(data), data))
            db.execute("DELETE FROM support_requests WHERE terminal_id = ?", (terminal_id,))
        return {"ticket": ticket, "received_at": at, "size": len(data), "sha256": sha256}

    def bundles(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT ticket, terminal_id, received_at, reason, file_name, sha256, size "
                           "FROM support_bundles WHERE ? IS NULL OR terminal_id = ? ORDER BY received_at",
                           (terminal_id, terminal_id))
        keys = ("ticket", "terminal_id", "received_at", "reason", "file_name", "sha256", "size")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def bundle(self, ticket: str) -> bytes | None:
        row = self.db.one("SELECT data FROM support_bundles WHERE ticket = ?", (ticket,))
        return bytes(row[0]) if row else None
