"""The deny list: card and wallet tokens refused at this terminal (from the backend, or local).

Entries live in the `deny_list` table; the journal's authenticated head holds the list's version, its
size and a keyed digest of its tokens (the sum, modulo 2**256, of an HMAC of each token), so an entry
deleted or added outside walletpos is found when the list is loaded. Decisions look tokens up in an
in-memory set built from the table once per version and checked against that digest: a lookup is one
hash probe (O(1)) whatever the list's size, and a row deleted from the table while a gate runs does
not let the card through.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from terminal.errors import JournalIntegrityError
from terminal.journal.db import Database
from terminal.journal.record import utc_text

_MOD = 2**256


def token_mac(key: bytes, token: str) -> int:
    return int.from_bytes(hmac.digest(key, b"deny|" + token.encode("utf-8"), "sha256"), "big")


def deny_digest(key: bytes, tokens: Iterable[str]) -> str:
    """The keyed digest of a set of tokens: the sum of their MACs modulo 2**256 (hex)."""
    total = 0
    for token in tokens:
        total = (total + token_mac(key, token)) % _MOD
    return f"{total:064x}"


def token_key(token: str) -> int:
    """A non-zero 64-bit key of a token for the in-memory set (zero marks an empty slot)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "big") | 1


class TokenSet:
    """Open addressing with linear probing over a numpy array of 64-bit keys (8 bytes a slot, load at
    most 1/2): a million tokens take 16 MB, a lookup a few probes."""

    def __init__(self, keys: Iterable[int] = ()) -> None:
        items = list(keys)
        self._count = 0
        self._mask = 0
        self._table: Any = None
        if not items:
            return
        import numpy as np  # here, not at the top: only a terminal with a deny list pays for loading it

        values = np.array(items, dtype=np.uint64)
        values = np.unique(values)
        size = 16
        while size < 2 * max(1, len(values)):
            size *= 2
        self._mask = size - 1
        self._table = np.zeros(size, dtype=np.uint64)
        remaining = values
        offset = 0
        while remaining.size:  # place every key at its first free slot along its probe sequence
            slots = ((remaining >> np.uint64(13)) + np.uint64(offset)) & np.uint64(self._mask)
            free = self._table[slots] == 0
            slot_free, key_free = slots[free], remaining[free]
            firsts, index = np.unique(slot_free, return_index=True)
            self._table[firsts] = key_free[index]
            placed = np.zeros(remaining.size, dtype=bool)
            placed[np.flatnonzero(free)[index]] = True
            remaining = remaining[~placed]
            offset += 1
        self._count = len(values)

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: int) -> bool:
        if not self._count:
            return False
        table, mask = self._table, self._mask
        slot = ((key >> 13) & mask)
        while True:
            value = int(table[slot])
            if value == key:
                return True
            if value == 0:
                return False
            slot = (slot + 1) & mask

    @property
    def nbytes(self) -> int:
        return int(self._table.nbytes) if self._table is not None else 0


class DenyList:
    def __init__(self, database: Database, key: bytes) -> None:
        self._d = database
        self._key = key
        self._loaded: tuple[int, int, str] | None = None  # (version, count, digest) of `_set`
        self._set = TokenSet()

    def changed_digest(self, digest: str, added: Iterable[str], removed: Iterable[str]) -> str:
        total = int(digest, 16)
        for token in added:
            total = (total + token_mac(self._key, token)) % _MOD
        for token in removed:
            total = (total - token_mac(self._key, token)) % _MOD
        return f"{total:064x}"

    # -- lookups (decisions) ---------------------------------------------------------------------

    def load(self, db: sqlite3.Connection, version: int, count: int, digest: str) -> None:
        """Build the in-memory set from the table, checked against the authenticated size and digest."""
        tokens = [row[0] for row in db.execute("SELECT card_token FROM deny_list")]
        if len(tokens) != count or deny_digest(self._key, tokens) != digest:
            self._loaded = None
            raise JournalIntegrityError(f"the deny list holds {len(tokens)} entries that do not match the "
                                        f"{count} the journal vouches for: entries were removed or added outside "
                                        "walletpos")
        self._set = TokenSet(token_key(t) for t in tokens)
        self._loaded = (version, count, digest)

    def contains_in(self, db: sqlite3.Connection, token: str | None, *, version: int, count: int,
                    digest: str) -> bool:
        """Is `token` denied, by the list the authenticated head describes (loaded when it changed)?"""
        if not token:
            return False
        if self._loaded != (version, count, digest):
            self.load(db, version, count, digest)
        return token_key(token) in self._set

    def memory_bytes(self) -> int:
        return self._set.nbytes

    # -- reads (status, sync) ---------------------------------------------------------------------

    def contains(self, card_token: str | None) -> bool:
        """Is the token in the table (a plain lookup, for reports and tests; decisions use `contains_in`)."""
        if not card_token:
            return False
        return bool(self._d.read("SELECT 1 FROM deny_list WHERE card_token = ?", (card_token,)))

    def entries(self, source: str | None = None) -> list[tuple[str, str, str]]:
        """(card token, reason, source) of every entry, or of one source ('backend' or 'local')."""
        if source is None:
            return self._d.read("SELECT card_token, reason, source FROM deny_list ORDER BY card_token")
        return self._d.read("SELECT card_token, reason, source FROM deny_list WHERE source = ? ORDER BY card_token",
                            (source,))

    # -- writes (inside the caller's transaction; the caller updates the head) ----------------------

    def apply_in(self, db: sqlite3.Connection, added: Sequence[tuple[str, str]], removed: Sequence[str], *,
                 source: str, version: int, now: datetime) -> tuple[list[str], list[str]]:
        """Add (token, reason) pairs and remove tokens; returns the tokens really added and removed
        (the head's size and digest change by exactly those)."""
        new: list[str] = []
        gone: list[str] = []
        at = utc_text(now)
        for token, reason in added:
            exists = db.execute("SELECT 1 FROM deny_list WHERE card_token = ?", (token,)).fetchone()
            if exists:
                if source == "backend":
                    db.execute("UPDATE deny_list SET reason = ?, source = 'backend', version = ? WHERE card_token = ?",
                               (reason, version, token))
                continue
            db.execute("INSERT INTO deny_list (card_token, reason, source, added_at, version) VALUES (?, ?, ?, ?, ?)",
                       (token, reason, source, at, version))
            new.append(token)
        for token in removed:
            if db.execute("DELETE FROM deny_list WHERE card_token = ?", (token,)).rowcount:
                gone.append(token)
        return new, gone
