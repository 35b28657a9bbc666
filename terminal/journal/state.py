"""The journal's own state, kept in the same write transactions as the rows it describes and
authenticated with the terminal's state key (an HMAC derived from the signing key):

All of it is one table, `state` (key, value, MAC), so the head and the day's card totals that an
append changes usually share a page:

- `head`: both chain heads (sequence number and hash), the counters status bars and rules read
  (queue depth, unsynced exposure, rows per sync state, approvals and declines), the last successful
  sync, the deny list's version, size and digest, and the integrity hold (why offline approvals are
  off, until a technician resolves it);
- `card|<day>|<token>`: per card (or wallet) token and business day, the offline count, the offline amount and
  everything approved: what the per-card limits read, one indexed row per decision;
- `guard|<name>`: other authenticated values (the last signed checkpoint, the backend's acknowledgement).

A decision reads only these (and the deny list, checked against the digest in `head`), so an edit
of a transaction row cannot change what the next decision sees, and an edit of the state itself
fails its MAC. Whether another connection changed the file since this one last wrote is known from
SQLite's `PRAGMA data_version`: when nothing else wrote, the head this process holds is current and
the check costs one pragma; otherwise the head is read, its MAC checked and both chain heads
compared with the last rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from terminal.errors import JournalIntegrityError
from terminal.journal.record import GENESIS_HASH

ZERO_DIGEST = "0" * 64
HEAD_FORMAT = "h1"
CARD_CACHE = 4096  # card totals a connection keeps in memory
UPDATE = "UPDATE state SET value = ?, mac = ? WHERE key = ?"
UPSERT = ("INSERT INTO state (key, value, mac) VALUES (?, ?, ?) "
          "ON CONFLICT(key) DO UPDATE SET value = excluded.value, mac = excluded.mac")
SALE_KINDS = ("sale", "fare")
OFFLINE_MODES = ("offline", "offline_fallback")
EXPOSED_STATES = ("pending", "rejected")  # offline approvals whose money the backend has not accepted
COUNTERS = ("approved", "declined", "pending", "accepted", "duplicate", "declined_after_offline", "rejected",
            "resolved", "exposure")


@dataclass(frozen=True, slots=True)
class Head:
    txn_seq: int = 0
    txn_hash: str = GENESIS_HASH
    audit_seq: int = 0
    audit_hash: str = GENESIS_HASH
    pending: int = 0  # rows the backend has not answered yet (the sync queue)
    exposure: int = 0  # minor units approved offline (sales, fares) not accepted by the backend
    approved: int = 0
    declined: int = 0
    accepted: int = 0
    duplicate: int = 0
    declined_after_offline: int = 0
    rejected: int = 0
    resolved: int = 0  # rejected rows a technician wrote off (no longer exposure)
    archived_seq: int = 0  # rows 1..archived_seq were archived (retention); the chain goes on from
    archived_hash: str = GENESIS_HASH  # ...this row hash
    last_sync_ok_at: str | None = None
    hold: str | None = None  # why offline approvals are off (integrity in doubt, a seq conflict, ...)
    deny_version: int = 0
    deny_count: int = 0
    deny_digest: str = ZERO_DIGEST
    signed_seq: int = 0  # rows up to here carry their signature (the rest are signed shortly)
    day: str = ""  # the business day of the newest row, and how many rows that day has (short references)
    day_count: int = 0

    def body(self) -> str:
        """The head as stored: its fields in declaration order joined by "|" (the hold, free text, last
        and in JSON). Built on every append, so by hand rather than through a generic encoder."""
        return (f"{HEAD_FORMAT}|{self.txn_seq}|{self.txn_hash}|{self.audit_seq}|{self.audit_hash}|{self.pending}|"
                f"{self.exposure}|{self.approved}|{self.declined}|{self.accepted}|{self.duplicate}|"
                f"{self.declined_after_offline}|{self.rejected}|{self.resolved}|{self.archived_seq}|"
                f"{self.archived_hash}|{self.last_sync_ok_at or ''}|{self.deny_version}|{self.deny_count}|"
                f"{self.deny_digest}|{self.signed_seq}|{self.day}|{self.day_count}|"
                f"{'null' if self.hold is None else json.dumps(self.hold)}")

    @classmethod
    def parse(cls, body: str) -> Head:
        parts = body.split("|", 23)
        if len(parts) != 24 or parts[0] != HEAD_FORMAT:
            raise ValueError("not a journal head")
        ints = [int(parts[i]) for i in (1, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17, 18, 20, 22)]
        hold = json.loads(parts[23])
        if hold is not None and not isinstance(hold, str):
            raise ValueError("the hold is not text")
        return cls(ints[0], parts[2], ints[1], parts[4], ints[2], ints[3], ints[4], ints[5], ints[6], ints[7],
                   ints[8], ints[9], ints[10], ints[11], parts[15], parts[16] or None, hold, ints[12], ints[13],
                   parts[19], ints[14], parts[21], ints[15])

    def counts(self) -> dict[str, int]:
        return {"total": self.txn_seq - self.archived_seq if self.archived_seq else self.txn_seq,
                "approved": self.approved, "declined": self.declined, "pending_sync": self.pending,
                "declined_after_offline": self.declined_after_offline}

    def sync_state_counts(self) -> dict[str, int]:
        return {"pending": self.pending, "accepted": self.accepted, "duplicate": self.duplicate,
                "declined_after_offline": self.declined_after_offline, "rejected": self.rejected,
                "resolved": self.resolved}


@dataclass(frozen=True, slots=True)
class CardDay:
    offline_count: int = 0
    offline_amount: int = 0
    amount: int = 0


ZERO_CARD = CardDay()


def _mac(key: bytes, text: str) -> bytes:
    """Keyed BLAKE2b (a MAC in its own right, and about three times cheaper here than HMAC-SHA256)."""
    return hashlib.blake2b(text.encode("utf-8"), key=key, digest_size=32).digest()


class StateBook:
    """Reads and writes the authenticated state on a connection the caller gives (inside its write
    transaction, or a reader)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._cached: tuple[int, Head] | None = None  # (data_version, head) after this connection's commit
        # card totals this connection read or wrote, valid while no other connection wrote (data_version)
        self._cards: dict[tuple[str, str], tuple[int, CardDay]] = {}

    # -- head -----------------------------------------------------------------------------------

    def read_head(self, db: sqlite3.Connection) -> Head:
        """The stored head, its MAC checked (JournalIntegrityError when it fails)."""
        row = db.execute("SELECT value, mac FROM state WHERE key = 'head'").fetchone()
        if row is None:
            if db.execute("SELECT 1 FROM txn LIMIT 1").fetchone() or db.execute("SELECT 1 FROM audit LIMIT 1") \
                    .fetchone():
                raise JournalIntegrityError("the journal's signed state is missing while it holds rows")
            return Head()
        body, mac = row
        if not isinstance(body, str) or not isinstance(mac, bytes) or \
                not hmac.compare_digest(_mac(self._key, f"head|{body}"), mac):
            raise JournalIntegrityError("the journal's state does not match its MAC: it was edited outside walletpos")
        try:
            head = Head.parse(body)
        except (ValueError, TypeError) as exc:
            raise JournalIntegrityError(f"the journal's state is unreadable ({exc})") from None
        return head

    def check_heads(self, db: sqlite3.Connection, head: Head) -> None:
        """Both chains end where the state says (rows deleted from the end, or added outside walletpos,
        show here)."""
        for table, seq, digest in (("txn", head.txn_seq, head.txn_hash), ("audit", head.audit_seq, head.audit_hash)):
            last = db.execute(f"SELECT seq, row_hash FROM {table} ORDER BY seq DESC LIMIT 1").fetchone()
            floor = head.archived_seq if table == "txn" else 0
            stored_seq = last[0] if last else floor
            stored_hash = (last[1].hex() if isinstance(last[1], bytes) else last[1]) if last else \
                (head.archived_hash if table == "txn" else GENESIS_HASH)
            if stored_seq != seq or stored_hash != digest:
                what = "transaction" if table == "txn" else "audit"
                if stored_seq < seq:
                    raise JournalIntegrityError(f"{what} rows {stored_seq + 1} to {seq} are missing from the end "
                                                "of the journal")
                if stored_seq > seq:
                    raise JournalIntegrityError(f"{what} rows {seq + 1} to {stored_seq} were added outside walletpos")
                raise JournalIntegrityError(f"{what} row {seq} is not the row the journal's state vouches for")

    def current(self, db: sqlite3.Connection) -> tuple[Head, int]:
        """The head inside a write transaction, and the file's data version (no other connection can
        commit until this transaction ends, so it stays that): the head this connection last wrote
        when nothing else wrote since, else read, checked and compared with both chains."""
        version = int(db.execute("PRAGMA data_version").fetchone()[0])
        cached = self._cached
        if cached is not None and cached[0] == version:
            return cached[1], version
        self._cached = None
        head = self.read_head(db)
        self.check_heads(db, head)
        self._cached = (version, head)
        return head, version

    def write_head(self, db: sqlite3.Connection, head: Head) -> None:
        body = head.body()
        mac = _mac(self._key, f"head|{body}")
        if not db.execute(UPDATE, (body, mac, "head")).rowcount:
            db.execute(UPSERT, ("head", body, mac))

    def remember(self, version: int, head: Head) -> None:
        """After this connection committed `head` (the data version read inside that transaction): it
        is current until another connection writes."""
        self._cached = (version, head)

    def forget(self) -> None:
        self._cached = None
        self._cards.clear()

    # -- per-card day totals ----------------------------------------------------------------------

    def card_day_at(self, db: sqlite3.Connection, version: int, token: str, day: str) -> CardDay:
        """`card_day`, from this connection's memory when nothing else wrote since it was read or written."""
        cached = self._cards.get((token, day))
        if cached is not None and cached[0] == version:
            return cached[1]
        totals = self.card_day(db, token, day)
        self._remember_card(version, token, day, totals)
        return totals

    def _remember_card(self, version: int, token: str, day: str, totals: CardDay) -> None:
        if len(self._cards) >= CARD_CACHE:
            self._cards.clear()
        self._cards[(token, day)] = (version, totals)

    def write_card_day_at(self, db: sqlite3.Connection, version: int, token: str, day: str, totals: CardDay, *,
                          exists: bool = False) -> None:
        self.write_card_day(db, token, day, totals, exists=exists)
        self._remember_card(version, token, day, totals)

    def card_day(self, db: sqlite3.Connection, token: str, day: str) -> CardDay:
        key = f"card|{day}|{token}"
        row = db.execute("SELECT value, mac FROM state WHERE key = ?", (key,)).fetchone()
        if row is None:
            # none yet: unless a row of this card today says otherwise (the totals were deleted)
            if db.execute("SELECT 1 FROM txn WHERE card_token = ? AND business_date = ? AND decision = 'approved' "
                          "AND kind IN ('sale', 'fare') LIMIT 1", (token, day)).fetchone():
                raise JournalIntegrityError("a card's totals for the day are missing while its payments are there")
            return CardDay()
        value, mac = row
        if not isinstance(value, str) or not isinstance(mac, bytes) or \
                not hmac.compare_digest(_mac(self._key, f"{key}|{value}"), mac):
            raise JournalIntegrityError("a card's totals for the day do not match their MAC: they were edited")
        try:
            count, offline, amount = (int(x) for x in value.split("|"))
        except ValueError:
            raise JournalIntegrityError("a card's totals for the day are unreadable") from None
        return CardDay(count, offline, amount)

    def write_card_day(self, db: sqlite3.Connection, token: str, day: str, totals: CardDay, *,
                       exists: bool = False) -> None:
        key, value = f"card|{day}|{token}", f"{totals.offline_count}|{totals.offline_amount}|{totals.amount}"
        mac = _mac(self._key, f"{key}|{value}")
        if not exists or not db.execute(UPDATE, (value, mac, key)).rowcount:
            db.execute(UPSERT, (key, value, mac))

    def card_days(self, db: sqlite3.Connection, day: str) -> int:
        """How many card totals are stored for `day`."""
        return int(db.execute("SELECT COUNT(*) FROM state WHERE key >= ? AND key < ?",
                              (f"card|{day}|", f"card|{day}}}")).fetchone()[0])

    # -- other authenticated values ---------------------------------------------------------------

    def guard(self, db: sqlite3.Connection, name: str) -> Any:
        """The authenticated value stored under `name` (None when absent)."""
        key = f"guard|{name}"
        row = db.execute("SELECT value, mac FROM state WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        if not isinstance(row[1], bytes) or not hmac.compare_digest(_mac(self._key, f"{key}|{row[0]}"), row[1]):
            raise JournalIntegrityError(f"the journal's {name} does not match its MAC: it was edited")
        return json.loads(row[0])

    def set_guard(self, db: sqlite3.Connection, name: str, value: Mapping[str, Any] | None) -> None:
        key = f"guard|{name}"
        if value is None:
            db.execute("DELETE FROM state WHERE key = ?", (key,))
            return
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        db.execute(UPSERT, (key, text, _mac(self._key, f"{key}|{text}")))

    # -- re-deriving the counters from the rows (after a problem, or when a technician resolves) ---

    def derive_counters(self, db: sqlite3.Connection, head: Head) -> Head:
        """`head` with every counter counted again from the rows (a full scan: only after a problem)."""
        row = db.execute(
            "SELECT COUNT(CASE WHEN decision = 'approved' THEN 1 END), "
            "COUNT(CASE WHEN decision = 'declined' THEN 1 END), "
            "COUNT(CASE WHEN sync_state = 'pending' THEN 1 END), "
            "COUNT(CASE WHEN sync_state = 'accepted' THEN 1 END), "
            "COUNT(CASE WHEN sync_state = 'duplicate' THEN 1 END), "
            "COUNT(CASE WHEN sync_state = 'declined_after_offline' THEN 1 END), "
            "COUNT(CASE WHEN sync_state = 'rejected' THEN 1 END), "
            "COUNT(CASE WHEN sync_state = 'resolved' THEN 1 END), "
            "COALESCE(SUM(CASE WHEN decision = 'approved' AND kind IN ('sale', 'fare') "
            "AND auth_mode IN ('offline', 'offline_fallback') AND sync_state IN ('pending', 'rejected') "
            "THEN amount END), 0) FROM txn").fetchone()
        approved, declined, pending, accepted, duplicate, dao, rejected, resolved, exposure = row
        return dataclasses.replace(head, approved=approved, declined=declined, pending=pending, accepted=accepted,
                                   duplicate=duplicate, declined_after_offline=dao, rejected=rejected,
                                   resolved=resolved, exposure=exposure)

    def rebuild_card_days(self, db: sqlite3.Connection, day: str) -> None:
        """The card totals of `day` counted again from the rows (after a problem)."""
        db.execute("DELETE FROM state WHERE key >= ? AND key < ?", (f"card|{day}|", f"card|{day}}}"))
        rows = db.execute(
            "SELECT card_token, COUNT(CASE WHEN auth_mode IN ('offline', 'offline_fallback') THEN 1 END), "
            "COALESCE(SUM(CASE WHEN auth_mode IN ('offline', 'offline_fallback') THEN amount END), 0), "
            "COALESCE(SUM(amount), 0) FROM txn WHERE business_date = ? AND card_token IS NOT NULL "
            "AND decision = 'approved' AND kind IN ('sale', 'fare') GROUP BY card_token", (day,)).fetchall()
        for token, count, offline, amount in rows:
            self.write_card_day(db, token, day, CardDay(count, offline, amount))


__all__ = ["COUNTERS", "EXPOSED_STATES", "OFFLINE_MODES", "SALE_KINDS", "CardDay", "Head", "StateBook"]
