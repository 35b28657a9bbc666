"""Issuer keys for signed wallet codes (authenticated: a key added by hand would let forged codes
through), and the wallet codes already used (each pays once)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime

from terminal.journal.db import Database
from terminal.journal.session import Session
from terminal.journal.state import StateBook

ISSUER_KEYS = "issuer_keys"


class IssuerKeys:
    def __init__(self, database: Database, state: StateBook,
                 session: Callable[..., AbstractContextManager[Session]]) -> None:
        self._d = database
        self._state = state
        self._session = session

    def _stored(self) -> dict[str, object]:
        with self._d.reader() as db:
            value = self._state.guard(db, ISSUER_KEYS)
        return value if isinstance(value, dict) else {}

    def all(self) -> dict[str, bytes]:
        """Issuer public keys delivered by the backend: key id -> raw Ed25519 public key."""
        keys = self._stored().get("keys") or {}
        assert isinstance(keys, dict)
        return {str(k): bytes.fromhex(str(v)) for k, v in keys.items()}

    def version(self) -> int:
        return int(str(self._stored().get("version") or 0))

    def replace(self, keys: Mapping[str, bytes], version: int, *, now: datetime) -> None:
        """Replace the backend-delivered issuer keys with `keys` (a full set, atomically)."""
        with self._session(now=now) as session:
            self._state.set_guard(session.db, ISSUER_KEYS,
                                  {"version": version, "keys": {k: v.hex() for k, v in keys.items()}})

    def code_used(self, wallet_id: str, counter: int) -> str | None:
        """The id of the transaction that used this wallet code, or None."""
        rows = self._d.read("SELECT txn_id FROM used_codes WHERE wallet_id = ? AND counter = ?", (wallet_id, counter))
        return rows[0][0] if rows else None
