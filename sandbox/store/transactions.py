"""Journal rows the terminals uploaded: one row per (terminal, transaction id), never two. Each row
is checked as the terminal signed it (hash, signature, place in the hash chain) and answered one by
one; an offline approval the wallet cannot honour is stored as declined after offline approval."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.signing import VerifyKey

from terminal.journal import GENESIS_HASH, canonical_bytes

from .database import Database
from .risk import Risk, flagged
from .transit import Transit

OFFLINE_MODES = ("offline", "offline_fallback")


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


DENIED_AFTER_DECLINE = "declined_after_offline"  # the deny-list reason of a card declined after an offline approval


class Transactions:
    def __init__(self, db: Database, *, risk: Risk | None = None, transit: Transit | None = None):
        self.db = db
        self.risk = risk
        self.transit = transit

    def ingest(self, terminal_id: str, key: Ed25519PublicKey, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Store a batch of signed journal rows; one result per row, in order."""
        ids = [r["id"] for r in records]
        seqs = [r["seq"] for r in records]
        lo, hi = min(seqs) - 1, max(seqs) + 1
        received_at = self.db.now_text()
        results: list[ItemResult] = []
        with self.db.transaction() as db:
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
            denied = flagged(db, "deny_list", records)
            broke = flagged(db, "out_of_funds", records)
            inserts: list[tuple[Any, ...]] = []
            stored: list[tuple[str, Mapping[str, Any]]] = []
            duplicates: list[tuple[str, str]] = []
            verifier = VerifyKey(key.public_bytes_raw())  # libsodium: each row's signature in ~60% of the time
            for rec in records:
                canonical = canonical_bytes(rec)
                result = self._judge(terminal_id, verifier, rec, hashlib.sha256(canonical).hexdigest(), by_id, by_seq,
                                     denied, broke)
                results.append(result)
                if result.status == "duplicate":
                    duplicates.append((terminal_id, rec["id"]))
                elif result.status != "rejected":
                    by_id[rec["id"]] = (rec["row_hash"], result.status, result.reason)
                    by_seq[rec["seq"]] = (rec["id"], rec["row_hash"], rec["prev_hash"])
                    inserts.append((terminal_id, rec["id"], rec["seq"], rec["row_hash"], rec["prev_hash"],
                                    canonical.decode("utf-8"), result.status, result.reason, received_at))
                    stored.append((terminal_id, rec))
                    if (result.status == "declined_after_offline" and result.reason != "deny_listed"
                            and self.risk is not None):
                        # a card the wallet declined after an offline approval: every terminal's deny
                        # list gets it at its next sync (a gate lets an unknown card ride once offline)
                        self.risk.deny_in(db, rec["card_token"], DENIED_AFTER_DECLINE)
            db.executemany(
                "INSERT INTO transactions (terminal_id, id, seq, row_hash, prev_hash, record, status, reason, "
                "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", inserts)
            db.executemany("UPDATE transactions SET times_received = times_received + 1 "
                           "WHERE terminal_id = ? AND id = ?", duplicates)
            if self.transit is not None:
                self.transit.record_in(db, stored)
            continuity = self._continuity(db, terminal_id)
        return {"terminal_id": terminal_id, "results": [r.to_dict() for r in results], **continuity,
                "server_time": self.db.now_text()}

    @staticmethod
    def _judge(terminal_id: str, key: VerifyKey, rec: Mapping[str, Any], computed_hash: str,
               by_id: dict[str, tuple[str, str, str | None]], by_seq: dict[int, tuple[str, str, str]],
               denied: set[str], broke: set[str]) -> ItemResult:
        rid, seq = rec["id"], rec["seq"]

        def rejected(reason: str) -> ItemResult:
            return ItemResult(rid, seq, "rejected", reason)

        if rec["terminal_id"] != terminal_id:
            return rejected("wrong_terminal")
        if computed_hash != rec["row_hash"]:
            return rejected("hash_mismatch")
        sealed = rec.get("sealed_card")
        if sealed is not None and (rec["sealed_card_sha256"] is None
                                   or hashlib.sha256(sealed.encode("utf-8")).hexdigest() != rec["sealed_card_sha256"]):
            return rejected("sealed_card_mismatch")
        known = by_id.get(rid)
        if known is not None:
            if known[0] != rec["row_hash"]:
                return rejected("id_conflict")
            return ItemResult(rid, seq, "duplicate", known[2], known[1])
        try:
            key.verify(bytes.fromhex(rec["row_hash"]), bytes.fromhex(rec["signature"]))
        except Exception:  # PyNaCl raises BadSignatureError, or ValueError for a signature of the wrong size
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

    def row_hash_at(self, terminal_id: str, seq: int) -> str | None:
        row = self.db.one("SELECT row_hash FROM transactions WHERE terminal_id = ? AND seq = ?", (terminal_id, seq))
        return str(row[0]) if row else None

    def continuity(self, terminal_id: str) -> dict[str, Any]:
        with self.db.lock:
            return self._continuity(self.db.connection, terminal_id)

    def forget(self, terminal_id: str, seqs: Sequence[int]) -> int:
        """Lose stored rows (to show that a terminal re-sends what its backend lost)."""
        with self.db.transaction() as db:
            return sum(db.execute("DELETE FROM transactions WHERE terminal_id = ? AND seq = ?",
                                  (terminal_id, seq)).rowcount for seq in seqs)

    def rows(self, terminal_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self.db.all(
            "SELECT id, seq, status, reason, times_received, row_hash, record FROM transactions "
            "WHERE terminal_id = ? AND seq > ? ORDER BY seq LIMIT ?", (terminal_id, after_seq, limit))
        return [{"id": i, "seq": s, "status": st, "reason": r, "times_received": n, "row_hash": h,
                 "record": json.loads(rec)} for i, s, st, r, n, h, rec in rows]  # the signed fields, canonical

    def stats(self, terminal_id: str | None = None) -> dict[str, Any]:
        where, params = ("WHERE terminal_id = ?", (terminal_id,)) if terminal_id else ("", ())
        count, distinct_ids, low, high, received = self.db.one(
            f"SELECT COUNT(*), COUNT(DISTINCT terminal_id || '/' || id), MIN(seq), MAX(seq), "
            f"COALESCE(SUM(times_received), 0) FROM transactions {where}", params) or (0, 0, None, None, 0)
        statuses = dict(self.db.all(f"SELECT status, COUNT(*) FROM transactions {where} GROUP BY status", params))
        out: dict[str, Any] = {"stored": count, "distinct_ids": distinct_ids, "min_seq": low, "max_seq": high,
                               "times_received": received, "duplicates_received": received - count,
                               "statuses": statuses}
        if terminal_id:
            out.update(self.continuity(terminal_id))
        return out

