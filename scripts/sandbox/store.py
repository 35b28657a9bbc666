"""The sandbox backend's state: one SQLite file (WAL), one connection behind a lock.

Everything the wallet backend knows lives here: enrolled terminals and their public keys, one-time
enrolment tokens, used request nonces, the transactions each terminal uploaded (one row per
(terminal, id), never two), online authorisations, the deny list and its change log, wallets marked
out of funds, merchant-QR payments, the limits it sets for terminals, issuer keys and its X25519
sealing key.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from terminal.errors import SecurityError
from terminal.journal import GENESIS_HASH, canonical_bytes, utc_text
from terminal.security import open_sealed
from terminal.wire import MAX_SKEW_S

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS terminals (
    terminal_id TEXT PRIMARY KEY, public_key TEXT NOT NULL, enrolled_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS enrolment_tokens (
    token TEXT PRIMARY KEY, terminal_id TEXT, created_at TEXT NOT NULL, used_at TEXT, used_by TEXT
);
CREATE TABLE IF NOT EXISTS nonces (
    terminal_id TEXT NOT NULL, nonce TEXT NOT NULL, ts_ms INTEGER NOT NULL, PRIMARY KEY (terminal_id, nonce)
);
CREATE INDEX IF NOT EXISTS nonces_age ON nonces (ts_ms);
CREATE TABLE IF NOT EXISTS transactions (
    terminal_id TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    row_hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    record TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    received_at TEXT NOT NULL,
    times_received INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (terminal_id, id),
    UNIQUE (terminal_id, seq)
);
CREATE TABLE IF NOT EXISTS authorisations (
    terminal_id TEXT NOT NULL, id TEXT NOT NULL, request_digest TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT, auth_code TEXT, decided_at TEXT NOT NULL, PRIMARY KEY (terminal_id, id)
);
CREATE TABLE IF NOT EXISTS deny_changes (
    version INTEGER PRIMARY KEY AUTOINCREMENT, card_token TEXT NOT NULL, action TEXT NOT NULL,
    reason TEXT NOT NULL, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deny_list (card_token TEXT PRIMARY KEY, reason TEXT NOT NULL, added_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS out_of_funds (card_token TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    reference TEXT PRIMARY KEY, status TEXT NOT NULL, amount INTEGER, currency TEXT, paid_at TEXT, card_token TEXT,
    terminal_id TEXT
);
CREATE TABLE IF NOT EXISTS issuer_keys (
    key_id TEXT PRIMARY KEY, private_key TEXT NOT NULL, public_key TEXT NOT NULL, created_at TEXT NOT NULL,
    retired_at TEXT
);
CREATE TABLE IF NOT EXISTS heartbeats (terminal_id TEXT PRIMARY KEY, received_at TEXT NOT NULL, body TEXT NOT NULL);
"""

LIMIT_NAMES = ("floor_limit", "cvm_required_limit", "contactless_transaction_limit", "offline_max_payment",
               "card_daily_amount", "card_daily_count", "exposure_cap", "max_hours_since_sync")
OFFLINE_MODES = ("offline", "offline_fallback")
_AUTH_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


class Refused(Exception):
    """A request the backend refuses: HTTP status, machine code, message."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


@dataclass(frozen=True, slots=True)
class ItemResult:
    id: str
    seq: int
    status: str
    reason: str | None = None
    original_status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "seq": self.seq, "status": self.status, "reason": self.reason,
                "original_status": self.original_status}


class Store:
    def __init__(self, path: Path | str, *, clock_offset_s: float = 0.0):
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(payments)")}
        if "terminal_id" not in columns:  # a sandbox file from before payments had an owner
            self._db.execute("ALTER TABLE payments ADD COLUMN terminal_id TEXT")
        self._keys: dict[str, Ed25519PublicKey] = {}
        self.clock_offset_s = clock_offset_s
        self._ensure_sealing_key()

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)

    def now_text(self) -> str:
        return utc_text(self.now())

    def _tx(self) -> _Tx:
        return _Tx(self)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def _set_meta(self, db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (key, value))

    def reset(self) -> None:
        """Forget everything except the sealing key, as a backend restored from nothing would (tests
        reuse one sandbox)."""
        with self._tx() as db:
            for table in ("terminals", "enrolment_tokens", "nonces", "transactions", "authorisations",
                          "deny_list", "out_of_funds", "payments", "issuer_keys", "heartbeats"):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM meta WHERE key NOT IN ('sealing_private_key', 'sealing_key_id')")
        # a backend that lost everything: deny-list versions start again from 1
        with self._tx() as db:
            db.execute("DELETE FROM deny_changes")
            db.execute("DELETE FROM sqlite_sequence WHERE name = 'deny_changes'")
        self._keys.clear()

    # -- sealing key ------------------------------------------------------------------------------

    def _ensure_sealing_key(self) -> None:
        if self.meta("sealing_private_key"):
            return
        with self._tx() as db:
            self._set_meta(db, "sealing_private_key", X25519PrivateKey.generate().private_bytes_raw().hex())
            self._set_meta(db, "sealing_key_id", "seal-" + secrets.token_hex(4))

    def sealing_key(self) -> dict[str, Any]:
        private = X25519PrivateKey.from_private_bytes(bytes.fromhex(self.meta("sealing_private_key") or ""))
        return {"key_id": self.meta("sealing_key_id"), "algorithm": "x25519-aesgcm-v1",
                "public_key": private.public_key().public_bytes_raw().hex()}

    def open_sealed(self, text: str) -> bytes:
        return open_sealed(bytes.fromhex(self.meta("sealing_private_key") or ""), text)

    def rotate_sealing_key(self) -> dict[str, Any]:
        with self._tx() as db:
            self._set_meta(db, "sealing_private_key", X25519PrivateKey.generate().private_bytes_raw().hex())
            self._set_meta(db, "sealing_key_id", "seal-" + secrets.token_hex(4))
        return self.sealing_key()

    # -- terminals, enrolment, nonces -------------------------------------------------------------

    def new_enrolment_token(self, terminal_id: str | None = None) -> str:
        token = secrets.token_urlsafe(24)
        with self._tx() as db:
            db.execute("INSERT INTO enrolment_tokens (token, terminal_id, created_at) VALUES (?, ?, ?)",
                       (token, terminal_id, self.now_text()))
        return token

    def register_terminal(self, terminal_id: str, public_key: bytes) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO terminals (terminal_id, public_key, enrolled_at) VALUES (?, ?, ?) "
                       "ON CONFLICT(terminal_id) DO UPDATE SET public_key = excluded.public_key",
                       (terminal_id, public_key.hex(), self.now_text()))
        self._keys.pop(terminal_id, None)

    def terminal_key(self, terminal_id: str) -> Ed25519PublicKey | None:
        key = self._keys.get(terminal_id)
        if key is None:
            row = self._one("SELECT public_key FROM terminals WHERE terminal_id = ?", (terminal_id,))
            if row is None:
                return None
            key = self._keys[terminal_id] = Ed25519PublicKey.from_public_bytes(bytes.fromhex(row[0]))
        return key

    def enrol(self, terminal_id: str, public_key: str, token: str) -> dict[str, Any]:
        with self._tx() as db:
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
            at = enrolled[1] if enrolled else self.now_text()
            if enrolled is None:
                db.execute("INSERT INTO terminals (terminal_id, public_key, enrolled_at) VALUES (?, ?, ?)",
                           (terminal_id, public_key, at))
            db.execute("UPDATE enrolment_tokens SET used_at = COALESCE(used_at, ?), used_by = ? WHERE token = ?",
                       (self.now_text(), terminal_id, token))
        return {"terminal_id": terminal_id, "enrolled_at": at, "sealing_key": self.sealing_key(),
                "server_time": self.now_text()}

    def use_nonce(self, terminal_id: str, nonce: str, ts_ms: int) -> bool:
        """Record a request nonce; False if this terminal used it within the replay window."""
        now_ms = int(self.now().timestamp() * 1000)
        with self._tx() as db:
            db.execute("DELETE FROM nonces WHERE ts_ms < ?", (now_ms - 2 * MAX_SKEW_S * 1000,))
            try:
                db.execute("INSERT INTO nonces (terminal_id, nonce, ts_ms) VALUES (?, ?, ?)",
                           (terminal_id, nonce, ts_ms))
            except sqlite3.IntegrityError:
                return False
        return True

    def heartbeat(self, terminal_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        now = self.now()
        skew: int | None
        try:
            terminal_time = datetime.fromisoformat(body["terminal_time"].replace("Z", "+00:00"))
            skew = int((terminal_time - now).total_seconds() * 1000)
        except ValueError:
            skew = None
        with self._tx() as db:
            db.execute("INSERT INTO heartbeats (terminal_id, received_at, body) VALUES (?, ?, ?) "
                       "ON CONFLICT(terminal_id) DO UPDATE SET received_at = excluded.received_at, "
                       "body = excluded.body",
                       (terminal_id, utc_text(now), json.dumps(body)))
        return {"server_time": utc_text(now), "clock_skew_ms": skew, "deny_list_version": self.deny_list_version(),
                "config_version": self.config()["version"], "issuer_keys_version": self.issuer_keys_version(),
                "sealing_key_id": self.meta("sealing_key_id")}

    def last_heartbeat(self, terminal_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT received_at, body FROM heartbeats WHERE terminal_id = ?", (terminal_id,))
        return {"received_at": row[0], **json.loads(row[1])} if row else None

    # -- transactions -----------------------------------------------------------------------------

    def ingest(self, terminal_id: str, key: Ed25519PublicKey, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Store a batch of signed journal rows; one result per row, in order."""
        ids = [r["id"] for r in records]
        seqs = [r["seq"] for r in records]
        lo, hi = min(seqs) - 1, max(seqs) + 1
        received_at = self.now_text()
        results: list[ItemResult] = []
        with self._tx() as db:
            by_id: dict[str, tuple[str, str, str | None]] = {}
            for chunk_start in range(0, len(ids), 500):
                chunk = ids[chunk_start:chunk_start + 500]
                marks = ",".join("?" * len(chunk))
                for rid, row_hash, status, reason in db.execute(
                    f"SELECT id, row_hash, status, reason FROM transactions WHERE terminal_id = ? AND id IN ({marks})",
                    (terminal_id, *chunk),
                ):
                    by_id[rid] = (row_hash, status, reason)
            by_seq: dict[int, tuple[str, str, str]] = {
                seq: (rid, row_hash, prev)
                for seq, rid, row_hash, prev in db.execute(
                    "SELECT seq, id, row_hash, prev_hash FROM transactions "
                    "WHERE terminal_id = ? AND seq BETWEEN ? AND ?",
                    (terminal_id, lo, hi),
                )
            }
            denied = self._flagged(db, "deny_list", records)
            broke = self._flagged(db, "out_of_funds", records)
            inserts: list[tuple[Any, ...]] = []
            duplicates: list[tuple[str, str]] = []
            for rec in records:
                canonical = canonical_bytes(rec)
                result = self._judge(terminal_id, key, rec, hashlib.sha256(canonical).hexdigest(), by_id, by_seq,
                                     denied, broke)
                results.append(result)
                if result.status == "duplicate":
                    duplicates.append((terminal_id, rec["id"]))
                elif result.status != "rejected":
                    by_id[rec["id"]] = (rec["row_hash"], result.status, result.reason)
                    by_seq[rec["seq"]] = (rec["id"], rec["row_hash"], rec["prev_hash"])
                    inserts.append((terminal_id, rec["id"], rec["seq"], rec["row_hash"], rec["prev_hash"],
                                    canonical.decode("utf-8"), result.status, result.reason, received_at))
            db.executemany(
                "INSERT INTO transactions (terminal_id, id, seq, row_hash, prev_hash, record, status, reason, "
                "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", inserts)
            db.executemany("UPDATE transactions SET times_received = times_received + 1 "
                           "WHERE terminal_id = ? AND id = ?", duplicates)
            continuity = self._continuity(db, terminal_id)
        return {"terminal_id": terminal_id, "results": [r.to_dict() for r in results], **continuity,
                "server_time": self.now_text()}

    @staticmethod
    def _flagged(db: sqlite3.Connection, table: str, records: Iterable[Mapping[str, Any]]) -> set[str]:
        tokens = sorted({r["card_token"] for r in records if r.get("card_token")})
        found: set[str] = set()
        for start in range(0, len(tokens), 500):
            chunk = tokens[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(t for (t,) in db.execute(
                f"SELECT card_token FROM {table} WHERE card_token IN ({marks})", chunk))
        return found

    @staticmethod
    def _judge(terminal_id: str, key: Ed25519PublicKey, rec: Mapping[str, Any], computed_hash: str,
               by_id: dict[str, tuple[str, str, str | None]], by_seq: dict[int, tuple[str, str, str]],
               denied: set[str], broke: set[str]) -> ItemResult:
        rid, seq = rec["id"], rec["seq"]

        def rejected(reason: str) -> ItemResult:
            return ItemResult(rid, seq, "rejected", reason)

        if rec["terminal_id"] != terminal_id:
            return rejected("wrong_terminal")
        if computed_hash != rec["row_hash"]:
            return rejected("hash_mismatch")
        known = by_id.get(rid)
        if known is not None:
            if known[0] != rec["row_hash"]:
                return rejected("id_conflict")
            return ItemResult(rid, seq, "duplicate", known[2], known[1])
        try:
            key.verify(bytes.fromhex(rec["signature"]), bytes.fromhex(rec["row_hash"]))
        except Exception:  # cryptography raises InvalidSignature
            return rejected("bad_signature")
        if seq in by_seq:
            return rejected("seq_conflict")
        before = by_seq.get(seq - 1)
        if (seq == 1 and rec["prev_hash"] != GENESIS_HASH) or (before is not None and before[1] != rec["prev_hash"]):
            return rejected("chain_break")
        after = by_seq.get(seq + 1)
        if after is not None and after[2] != rec["row_hash"]:
            return rejected("chain_break")
        if (rec["decision"] == "approved" and rec["auth_mode"] in OFFLINE_MODES and rec["kind"] in ("sale", "fare")
                and rec["card_token"]):
            if rec["card_token"] in broke:
                return ItemResult(rid, seq, "declined_after_offline", "insufficient_funds")
            if rec["card_token"] in denied:
                return ItemResult(rid, seq, "declined_after_offline", "deny_listed")
        return ItemResult(rid, seq, "accepted")

    def _continuity(self, db: sqlite3.Connection, terminal_id: str) -> dict[str, Any]:
        count, low, high = db.execute(
            "SELECT COUNT(*), MIN(seq), MAX(seq) FROM transactions WHERE terminal_id = ?", (terminal_id,)).fetchone()
        if not count:
            return {"highest_contiguous_seq": 0, "gaps": []}
        gaps: list[dict[str, int]] = []
        if count != high:  # some sequence number below the highest is missing
            if low > 1:
                gaps.append({"first": 1, "last": low - 1})
            gaps.extend(
                {"first": first, "last": last} for first, last in db.execute(
                    "SELECT seq + 1, next_seq - 1 FROM (SELECT seq, LEAD(seq) OVER (ORDER BY seq) AS next_seq "
                    "FROM transactions WHERE terminal_id = ?) WHERE next_seq > seq + 1 ORDER BY seq LIMIT 100",
                    (terminal_id,))
            )
        return {"highest_contiguous_seq": gaps[0]["first"] - 1 if gaps else high, "gaps": gaps[:100]}

    def continuity(self, terminal_id: str) -> dict[str, Any]:
        with self._lock:
            return self._continuity(self._db, terminal_id)

    def forget(self, terminal_id: str, seqs: Sequence[int]) -> int:
        """Lose stored rows (to show that a terminal re-sends what its backend lost)."""
        with self._tx() as db:
            return sum(db.execute("DELETE FROM transactions WHERE terminal_id = ? AND seq = ?",
                                  (terminal_id, seq)).rowcount for seq in seqs)

    def transactions(self, terminal_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT id, seq, status, reason, times_received, row_hash, record FROM transactions "
            "WHERE terminal_id = ? AND seq > ? ORDER BY seq LIMIT ?", (terminal_id, after_seq, limit))
        return [{"id": i, "seq": s, "status": st, "reason": r, "times_received": n, "row_hash": h,
                 "record": json.loads(rec)} for i, s, st, r, n, h, rec in rows]  # the signed fields, canonical

    def stats(self, terminal_id: str | None = None) -> dict[str, Any]:
        where, params = ("WHERE terminal_id = ?", (terminal_id,)) if terminal_id else ("", ())
        count, distinct_ids, low, high, received = self._one(
            f"SELECT COUNT(*), COUNT(DISTINCT terminal_id || '/' || id), MIN(seq), MAX(seq), "
            f"COALESCE(SUM(times_received), 0) FROM transactions {where}", params) or (0, 0, None, None, 0)
        statuses = dict(self._all(f"SELECT status, COUNT(*) FROM transactions {where} GROUP BY status", params))
        out: dict[str, Any] = {"stored": count, "distinct_ids": distinct_ids, "min_seq": low, "max_seq": high,
                               "times_received": received, "duplicates_received": received - count,
                               "statuses": statuses}
        if terminal_id:
            out.update(self.continuity(terminal_id))
        return out

    # -- online authorisation ---------------------------------------------------------------------

    def authorise(self, terminal_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        digest = json.dumps([body["amount"], body["currency"], body.get("card_token"), body["method"]])
        with self._tx() as db:
            row = db.execute("SELECT request_digest, status, reason, auth_code, decided_at FROM authorisations "
                             "WHERE terminal_id = ? AND id = ?", (terminal_id, body["id"])).fetchone()
            if row is not None:
                if row[0] != digest:
                    raise Refused(409, "id_reused", f"transaction id {body['id']} was already used for another payment")
                return {"id": body["id"], "status": row[1], "reason": row[2], "auth_code": row[3], "decided_at": row[4]}
            token = body.get("card_token")
            reason = None
            if token and db.execute("SELECT 1 FROM deny_list WHERE card_token = ?", (token,)).fetchone():
                reason = "deny_listed"
            elif token and db.execute("SELECT 1 FROM out_of_funds WHERE card_token = ?", (token,)).fetchone():
                reason = "insufficient_funds"
            elif body.get("sealed_card"):
                try:
                    self.open_sealed(body["sealed_card"])
                except (SecurityError, ValueError):
                    reason = "sealed_card_unreadable"
            status = "declined" if reason else "approved"
            code = "".join(secrets.choice(_AUTH_CODE_ALPHABET) for _ in range(6)) if status == "approved" else None
            decided_at = self.now_text()
            db.execute("INSERT INTO authorisations (terminal_id, id, request_digest, status, reason, auth_code, "
                       "decided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (terminal_id, body["id"], digest, status, reason, code, decided_at))
        return {"id": body["id"], "status": status, "reason": reason, "auth_code": code, "decided_at": decided_at}

    def authorisation_count(self) -> int:
        row = self._one("SELECT COUNT(*) FROM authorisations")
        return row[0] if row else 0

    # -- deny list and wallets --------------------------------------------------------------------

    def deny(self, card_token: str, reason: str = "blocked_by_issuer") -> int:
        with self._tx() as db:
            db.execute("INSERT INTO deny_list (card_token, reason, added_at) VALUES (?, ?, ?) "
                       "ON CONFLICT(card_token) DO UPDATE SET reason = excluded.reason",
                       (card_token, reason, self.now_text()))
            db.execute("INSERT INTO deny_changes (card_token, action, reason, at) VALUES (?, 'add', ?, ?)",
                       (card_token, reason, self.now_text()))
        return self.deny_list_version()

    def allow(self, card_token: str) -> int:
        with self._tx() as db:
            db.execute("DELETE FROM deny_list WHERE card_token = ?", (card_token,))
            db.execute("INSERT INTO deny_changes (card_token, action, reason, at) VALUES (?, 'remove', '', ?)",
                       (card_token, self.now_text()))
        return self.deny_list_version()

    def deny_list_version(self) -> int:
        row = self._one("SELECT MAX(version) FROM deny_changes")
        return row[0] or 0 if row else 0

    def deny_delta(self, since: int, limit: int) -> dict[str, Any]:
        latest = self.deny_list_version()
        reset = since > latest
        if reset:
            since = 0
        rows = self._all("SELECT version, card_token, action, reason FROM deny_changes WHERE version > ? "
                         "ORDER BY version LIMIT ?", (since, limit))
        state: dict[str, tuple[str, str]] = {}  # last change per token within this page wins
        for _, token, action, reason in rows:
            state.pop(token, None)
            state[token] = (action, reason)
        version = rows[-1][0] if rows else (latest if not reset else 0)
        return {
            "version": version, "latest_version": latest, "has_more": bool(rows) and version < latest,
            "reset": reset,
            "added": [{"card_token": t, "reason": r} for t, (a, r) in state.items() if a == "add"],
            "removed": [t for t, (a, _) in state.items() if a == "remove"],
        }

    def set_out_of_funds(self, card_token: str, flag: bool = True) -> None:
        with self._tx() as db:
            if flag:
                db.execute("INSERT INTO out_of_funds (card_token, at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           (card_token, self.now_text()))
            else:
                db.execute("DELETE FROM out_of_funds WHERE card_token = ?", (card_token,))

    # -- merchant-QR payments ---------------------------------------------------------------------

    # A merchant code belongs to the terminal that showed it: the first terminal that asks about a
    # reference (or the terminal named in the code the app paid) owns it, and to any other terminal
    # the reference does not exist (404, the same answer as for a reference nobody knows).

    @staticmethod
    def _claim(db: sqlite3.Connection, reference: str, terminal_id: str | None) -> None:
        row = db.execute("SELECT terminal_id FROM payments WHERE reference = ?", (reference,)).fetchone()
        if row is None:
            db.execute("INSERT INTO payments (reference, status, terminal_id) VALUES (?, 'pending', ?)",
                       (reference, terminal_id))
        elif row[0] is None:
            db.execute("UPDATE payments SET terminal_id = ? WHERE reference = ?", (terminal_id, reference))
        elif terminal_id is not None and row[0] != terminal_id:
            raise Refused(404, "payment_not_found", f"no merchant code {reference} from this terminal")

    def mark_paid(self, reference: str, amount: int | None, currency: str | None, card_token: str | None,
                  terminal_id: str | None = None) -> dict:
        """The customer pays the code in the wallet app (the sandbox's stand-in for the app);
        `terminal_id` is the terminal label in the code, when the app passes it on."""
        with self._tx() as db:
            self._claim(db, reference, terminal_id)
            row = db.execute("SELECT status FROM payments WHERE reference = ?", (reference,)).fetchone()
            if row[0] == "cancelled":
                raise Refused(409, "payment_cancelled", f"the merchant closed code {reference}; it cannot be paid")
            db.execute("UPDATE payments SET status = 'paid', amount = ?, currency = ?, paid_at = ?, card_token = ? "
                       "WHERE reference = ?", (amount, currency, self.now_text(), card_token, reference))
        return self._status(reference)

    def cancel_payment(self, reference: str, terminal_id: str) -> dict[str, Any]:
        """Close a merchant code: unpaid -> cancelled (the app can no longer pay it); paid stays paid."""
        with self._tx() as db:
            self._claim(db, reference, terminal_id)
            db.execute("UPDATE payments SET status = 'cancelled' WHERE reference = ? AND status = 'pending'",
                       (reference,))
        return self._status(reference)

    def payment(self, reference: str, terminal_id: str) -> dict[str, Any]:
        """What became of a code, asked by `terminal_id` (which then owns it if nobody did)."""
        with self._tx() as db:
            self._claim(db, reference, terminal_id)
        return self._status(reference)

    def _status(self, reference: str) -> dict[str, Any]:
        row = self._one("SELECT status, amount, currency, paid_at, card_token FROM payments WHERE reference = ?",
                        (reference,))
        status, amount, cur, paid_at, token = row or ("pending", None, None, None, None)
        return {"reference": reference, "status": status, "amount": amount, "currency": cur, "paid_at": paid_at,
                "card_token": token}

    # -- terminal limits --------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        text = self.meta("terminal_config")
        if not text:
            return {"version": 0, "currency": "CNY", "limits": dict.fromkeys(LIMIT_NAMES)}
        return json.loads(text)

    def set_config(self, currency: str, limits: Mapping[str, int | None]) -> dict[str, Any]:
        unknown = set(limits) - set(LIMIT_NAMES)
        if unknown:
            raise Refused(422, "invalid_request", f"unknown limits: {', '.join(sorted(unknown))}")
        with self._tx() as db:
            current = self.config()
            body = {"version": current["version"] + 1, "currency": currency,
                    "limits": {name: limits.get(name) for name in LIMIT_NAMES}}
            self._set_meta(db, "terminal_config", json.dumps(body))
        return body

    # -- issuer keys ------------------------------------------------------------------------------

    def issuer_keys_version(self) -> int:
        return int(self.meta("issuer_keys_version") or 0)

    def issuer_keys(self) -> dict[str, Any]:
        rows = self._all("SELECT key_id, public_key FROM issuer_keys WHERE retired_at IS NULL ORDER BY key_id")
        return {"version": self.issuer_keys_version(),
                "keys": [{"key_id": k, "algorithm": "Ed25519", "public_key": p} for k, p in rows]}

    def new_issuer_key(self, key_id: str | None = None) -> dict[str, Any]:
        key_id = key_id or "iss-" + secrets.token_hex(4)
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes_raw().hex()
        with self._tx() as db:
            try:
                db.execute("INSERT INTO issuer_keys (key_id, private_key, public_key, created_at) VALUES (?, ?, ?, ?)",
                           (key_id, private.private_bytes_raw().hex(), public, self.now_text()))
            except sqlite3.IntegrityError:
                raise Refused(409, "key_exists", f"issuer key {key_id} exists") from None
            self._set_meta(db, "issuer_keys_version", str(self.issuer_keys_version() + 1))
        return {"key_id": key_id, "algorithm": "Ed25519", "public_key": public}

    def retire_issuer_key(self, key_id: str) -> None:
        with self._tx() as db:
            if db.execute("UPDATE issuer_keys SET retired_at = ? WHERE key_id = ? AND retired_at IS NULL",
                          (self.now_text(), key_id)).rowcount == 0:
                raise Refused(404, "unknown_key", f"no active issuer key {key_id}")
            self._set_meta(db, "issuer_keys_version", str(self.issuer_keys_version() + 1))

    def issuer_sign(self, key_id: str, payload: bytes) -> bytes:
        """Sign bytes with issuer key `key_id` (how signed wallet payment codes are minted)."""
        row = self._one("SELECT private_key FROM issuer_keys WHERE key_id = ? AND retired_at IS NULL", (key_id,))
        if row is None:
            raise Refused(404, "unknown_key", f"no active issuer key {key_id}")
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(row[0])).sign(payload)


class _Tx:
    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        self.store._lock.acquire()
        try:
            self.store._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.store._lock.release()
            raise
        return self.store._db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.store._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.store._lock.release()
