"""The backend's keys: its X25519 sealing key (terminals seal card data to it) and the issuer keys
that sign wallet payment codes (the public halves go to the terminals)."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from terminal.security import open_sealed

from ..errors import Refused
from .database import Database


class Keys:
    def __init__(self, db: Database):
        self.db = db
        if not self.db.meta("sealing_private_key"):
            self.rotate_sealing_key()
        if not self.db.meta("ack_private_key"):
            with self.db.transaction() as tx:
                self.db.set_meta(tx, "ack_private_key", Ed25519PrivateKey.generate().private_bytes_raw().hex())

    # -- acknowledgements of terminals' journal heads ----------------------------------------------

    def _ack_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(self.db.meta("ack_private_key") or ""))

    def ack_public_key(self) -> str:
        return self._ack_key().public_key().public_bytes_raw().hex()

    def sign_ack(self, digest: bytes) -> str:
        return self._ack_key().sign(digest).hex()

    # -- sealing key ------------------------------------------------------------------------------

    def sealing_key(self) -> dict[str, Any]:
        private = X25519PrivateKey.from_private_bytes(bytes.fromhex(self.db.meta("sealing_private_key") or ""))
        return {"key_id": self.db.meta("sealing_key_id"), "algorithm": "x25519-aesgcm-v1",
                "public_key": private.public_key().public_bytes_raw().hex()}

    def sealing_key_id(self) -> str | None:
        return self.db.meta("sealing_key_id")

    def open_sealed(self, text: str) -> bytes:
        return open_sealed(bytes.fromhex(self.db.meta("sealing_private_key") or ""), text)

    def rotate_sealing_key(self) -> dict[str, Any]:
        with self.db.transaction() as db:
            self.db.set_meta(db, "sealing_private_key", X25519PrivateKey.generate().private_bytes_raw().hex())
            self.db.set_meta(db, "sealing_key_id", "seal-" + secrets.token_hex(4))
        return self.sealing_key()

    # -- issuer keys ------------------------------------------------------------------------------

    def issuer_keys_version(self) -> int:
        return int(self.db.meta("issuer_keys_version") or 0)

    def issuer_keys(self) -> dict[str, Any]:
        rows = self.db.all("SELECT key_id, public_key FROM issuer_keys WHERE retired_at IS NULL ORDER BY key_id")
        return {"version": self.issuer_keys_version(),
                "keys": [{"key_id": k, "algorithm": "Ed25519", "public_key": p} for k, p in rows]}

    def new_issuer_key(self, key_id: str | None = None) -> dict[str, Any]:
        key_id = key_id or "iss-" + secrets.token_hex(4)
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes_raw().hex()
        with self.db.transaction() as db:
            try:
                db.execute("INSERT INTO issuer_keys (key_id, private_key, public_key, created_at) VALUES (?, ?, ?, ?)",
                           (key_id, private.private_bytes_raw().hex(), public, self.db.now_text()))
            except sqlite3.IntegrityError:
                raise Refused(409, "key_exists", f"issuer key {key_id} exists") from None
            self.db.set_meta(db, "issuer_keys_version", str(self.issuer_keys_version() + 1))
        return {"key_id": key_id, "algorithm": "Ed25519", "public_key": public}

    def retire_issuer_key(self, key_id: str) -> None:
        with self.db.transaction() as db:
            if db.execute("UPDATE issuer_keys SET retired_at = ? WHERE key_id = ? AND retired_at IS NULL",
                          (self.db.now_text(), key_id)).rowcount == 0:
                raise Refused(404, "unknown_key", f"no active issuer key {key_id}")
            self.db.set_meta(db, "issuer_keys_version", str(self.issuer_keys_version() + 1))

    def issuer_sign(self, key_id: str, payload: bytes) -> bytes:
        """Sign bytes with issuer key `key_id` (how signed wallet payment codes are minted)."""
        row = self.db.one("SELECT private_key FROM issuer_keys WHERE key_id = ? AND retired_at IS NULL", (key_id,))
        if row is None:
            raise Refused(404, "unknown_key", f"no active issuer key {key_id}")
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(row[0])).sign(payload)
