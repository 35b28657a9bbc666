"""Terminals: one-time enrolment tokens, enrolled terminals and their public keys, the request
nonces each terminal used (replay protection), and each terminal's last heartbeat."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from terminal.wire import MAX_SKEW_S

from ..errors import Refused
from .database import Database


class Terminals:
    def __init__(self, db: Database):
        self.db = db
        self._keys: dict[str, Ed25519PublicKey] = {}

    def forget_keys(self) -> None:
        self._keys.clear()

    def new_enrolment_token(self, terminal_id: str | None = None) -> str:
        token = secrets.token_urlsafe(24)
        with self.db.transaction() as db:
            db.execute("INSERT INTO enrolment_tokens (token, terminal_id, created_at) VALUES (?, ?, ?)",
                       (token, terminal_id, self.db.now_text()))
        return token

    def register(self, terminal_id: str, public_key: bytes) -> None:
        """Enrol a terminal with a key directly (the bank's back office, bypassing the token)."""
        with self.db.transaction() as db:
            db.execute("INSERT INTO terminals (terminal_id, public_key, enrolled_at) VALUES (?, ?, ?) "
                       "ON CONFLICT(terminal_id) DO UPDATE SET public_key = excluded.public_key",
                       (terminal_id, public_key.hex(), self.db.now_text()))
        self._keys.pop(terminal_id, None)

    def key(self, terminal_id: str) -> Ed25519PublicKey | None:
        key = self._keys.get(terminal_id)
        if key is None:
            row = self.db.one("SELECT public_key FROM terminals WHERE terminal_id = ?", (terminal_id,))
            if row is None:
                return None
            key = self._keys[terminal_id] = Ed25519PublicKey.from_public_bytes(bytes.fromhex(row[0]))
        return key

    def enrol(self, terminal_id: str, public_key: str, token: str) -> str:
        """Bind `public_key` to `terminal_id` with a one-time token; returns when it was enrolled
        (the first time: enrolling again with the same key is idempotent)."""
        with self.db.transaction() as db:
            row = db.execute("SELECT terminal_id, used_by FROM enrolment_tokens WHERE token = ?", (token,)).fetchone()
            enrolled = db.execute("SELECT public_key, enrolled_at FROM terminals WHERE terminal_id = ?",
                                  (terminal_id,)).fetchone()
            if row is None:
                raise Refused(403, "unknown_token", "this enrolment token is unknown; ask the bank for a new one")
            bound_to, used_by = row
            if bound_to is not None and bound_to != terminal_id:
                raise Refused(403, "token_for_other_terminal", "this enrolment token was issued for another terminal")
            if used_by is not None and used_by != terminal_id:
                raise Refused(403, "token_used", "this enrolment token was already used")
            if enrolled is not None and enrolled[0] != public_key:
                raise Refused(409, "already_enrolled",
                              "this terminal is enrolled with another key; the bank must retire it first")
            if used_by is not None and enrolled is None:
                raise Refused(403, "token_used", "this enrolment token was already used")
            at = enrolled[1] if enrolled else self.db.now_text()
            if enrolled is None:
                db.execute("INSERT INTO terminals (terminal_id, public_key, enrolled_at) VALUES (?, ?, ?)",
                           (terminal_id, public_key, at))
            db.execute("UPDATE enrolment_tokens SET used_at = COALESCE(used_at, ?), used_by = ? WHERE token = ?",
                       (self.db.now_text(), terminal_id, token))
        return at

    def use_nonce(self, terminal_id: str, nonce: str, ts_ms: int) -> bool:
        """Record a request nonce; False if this terminal used it within the replay window."""
        now_ms = self.db.now_ms()
        with self.db.transaction() as db:
            db.execute("DELETE FROM nonces WHERE ts_ms < ?", (now_ms - 2 * MAX_SKEW_S * 1000,))
            try:
                db.execute("INSERT INTO nonces (terminal_id, nonce, ts_ms) VALUES (?, ?, ?)",
                           (terminal_id, nonce, ts_ms))
            except sqlite3.IntegrityError:
                return False
        return True

    def record_heartbeat(self, terminal_id: str, received_at: str, body: Mapping[str, Any]) -> None:
        with self.db.transaction() as db:
            db.execute("INSERT INTO heartbeats (terminal_id, received_at, body) VALUES (?, ?, ?) "
                       "ON CONFLICT(terminal_id) DO UPDATE SET received_at = excluded.received_at, "
                       "body = excluded.body",
                       (terminal_id, received_at, json.dumps(body)))

    def last_heartbeat(self, terminal_id: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT received_at, body FROM heartbeats WHERE terminal_id = ?", (terminal_id,))
        return {"received_at": row[0], **json.loads(row[1])} if row else None
