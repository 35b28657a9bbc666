"""Issuer keys for signed wallet codes, and the wallet codes already used (each pays once)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime

from terminal.journal.db import Database
from terminal.journal.record import utc_text


class IssuerKeys:
    def __init__(self, database: Database):
        self._d = database

    def all(self) -> dict[str, bytes]:
        """Issuer public keys delivered by the backend: key id -> raw Ed25519 public key."""
        return {k: bytes.fromhex(v) for k, v in self._d.read("SELECT key_id, public_key FROM issuer_keys")}

    def replace(self, keys: Mapping[str, bytes], version: int, *, now: datetime) -> None:
        """Replace the backend-delivered issuer keys with `keys` (a full set, atomically)."""
        try:
            with self._d.write() as db:
                db.execute("DELETE FROM issuer_keys WHERE source = 'backend'")
                db.executemany(
                    "INSERT INTO issuer_keys (key_id, public_key, source, added_at) VALUES (?, ?, 'backend', ?)",
                    [(k, v.hex(), utc_text(now)) for k, v in keys.items()],
                )
                db.execute("INSERT INTO meta (key, value) VALUES ('issuer_keys_version', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(version),))
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "store issuer keys") from None


    def code_used(self, wallet_id: str, counter: int) -> str | None:
        """The id of the transaction that used this wallet code, or None."""
        rows = self._d.read("SELECT txn_id FROM used_codes WHERE wallet_id = ? AND counter = ?", (wallet_id, counter))
        return rows[0][0] if rows else None
