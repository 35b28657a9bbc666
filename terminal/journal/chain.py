"""Integrity of the journal: the signed seal of both chain heads, and `verify`, which walks both
chains and reports the first row that was edited, deleted or reordered.

A signed seal of both chain heads is written in the append's own transaction every SEAL_EVERY
transactions, after every audit row, by `seal_head()` (housekeeping) and on close. `verify`
reports rows missing below the seal, so deleting rows from the end of the journal is caught
(except rows appended after the latest seal, which the backend's sequence check catches).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from terminal.errors import StorageError
from terminal.journal.db import Database
from terminal.journal.record import (
    AUDIT_SIGNED_FIELDS,
    GENESIS_HASH,
    SIGNED_FIELDS,
    VerifyReport,
    canonical_json,
    record_hash,
    utc_text,
)
from terminal.journal.txns import TXN_COLUMNS, row_of
from terminal.security import TerminalKeys, verify_signature


class Chain:
    def __init__(self, database: Database, keys: TerminalKeys):
        self._d = database
        self._keys = keys

    def seal(self, db: sqlite3.Connection, at: str) -> None:
        """Write the signed seal of both chain heads (inside the caller's transaction)."""
        txn = db.execute("SELECT seq, row_hash FROM txn ORDER BY seq DESC LIMIT 1").fetchone() or (0, GENESIS_HASH)
        aud = db.execute("SELECT seq, row_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone() or (0, GENESIS_HASH)
        body = {"terminal_id": self._d.terminal_id, "txn_seq": txn[0], "txn_hash": txn[1],
                "audit_seq": aud[0], "audit_hash": aud[1], "sealed_at": at}
        body["signature"] = self._keys.sign(hashlib.sha256(canonical_json(body).encode()).digest()).hex()
        db.execute("INSERT INTO meta (key, value) VALUES ('head_seal', ?) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (canonical_json(body),))

    def seal_head(self, now: datetime | None = None) -> None:
        """Seal the current heads if rows were added since the last seal (housekeeping, close)."""
        current = self._d.read("SELECT (SELECT COALESCE(MAX(seq), 0) FROM txn), "
                             "(SELECT COALESCE(MAX(seq), 0) FROM audit)")[0]
        seal = json.loads(self._d.meta("head_seal") or "{}")
        if (seal.get("txn_seq", 0), seal.get("audit_seq", 0)) == tuple(current):
            return
        try:
            with self._d.write() as db:
                self.seal(db, utc_text(now or datetime.now(UTC)))
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "seal the journal head") from None

    def _read_seal(self, key: bytes) -> tuple[dict[str, Any], str | None]:
        text = self._d.meta("head_seal")
        if not text:
            return {}, None
        try:
            seal = json.loads(text)
            body = {k: seal[k] for k in ("terminal_id", "txn_seq", "txn_hash", "audit_seq", "audit_hash",
                                         "sealed_at")}
            signature = bytes.fromhex(seal["signature"])
        except (ValueError, KeyError, TypeError):
            return {}, "the journal's head seal is unreadable"
        if not verify_signature(key, signature, hashlib.sha256(canonical_json(body).encode()).digest()):
            return {}, "the journal's head seal is not signed by this terminal"
        return body, None

    def verify(self, public_key: bytes | None = None) -> VerifyReport:
        """Walk both chains; report the first row that was edited, deleted or reordered."""
        key = public_key or self._keys.public_key_bytes
        txn_checked = audit_checked = 0
        try:
            sealed, seal_problem = self._read_seal(key)
            if seal_problem:
                return VerifyReport(False, 0, 0, None, "meta", seal_problem)
            for table, names in (("txn", SIGNED_FIELDS), ("audit", AUDIT_SIGNED_FIELDS)):
                expected_seq, prev = 1, GENESIS_HASH
                checked = 0
                sealed_hash_seen = None
                for record, row_hash, signature in self._chain_records(table):
                    problem = None
                    if "unreadable" in record and record["seq"] == expected_seq:
                        problem, bad = f"the row cannot be read ({record['unreadable']})", expected_seq
                    elif record["seq"] != expected_seq:
                        problem = (f"row {expected_seq} is missing (next stored row is {record['seq']})"
                                   if record["seq"] > expected_seq else f"row {record['seq']} is out of order")
                        bad = expected_seq
                    elif record["prev_hash"] != prev:
                        problem, bad = "its previous-row hash does not match: rows were removed or reordered", \
                            expected_seq
                    elif record_hash(record, names) != row_hash:
                        problem, bad = "its content does not match its hash: the row was edited", expected_seq
                    elif not verify_signature(key, bytes.fromhex(signature), bytes.fromhex(row_hash)):
                        problem, bad = "its signature is not the terminal's", expected_seq
                    if problem:
                        return self._bad(table, bad, problem, txn_checked, audit_checked, checked)
                    prev, expected_seq = row_hash, expected_seq + 1
                    checked += 1
                    if record["seq"] == sealed.get(f"{table}_seq"):
                        sealed_hash_seen = row_hash
                if table == "txn":
                    txn_checked = checked
                else:
                    audit_checked = checked
                head = sealed.get(f"{table}_seq", 0)
                if head >= expected_seq:
                    return self._bad(table, expected_seq,
                                     f"rows {expected_seq} to {head} were sealed but are missing",
                                     txn_checked, audit_checked, checked)
                if head and sealed_hash_seen != sealed.get(f"{table}_hash"):
                    return self._bad(table, head, "it differs from the sealed head of the journal",
                                     txn_checked, audit_checked, checked)
        except (sqlite3.Error, StorageError) as exc:
            return VerifyReport(False, txn_checked, audit_checked, None, None, f"cannot read the journal: {exc}")
        return VerifyReport(True, txn_checked, audit_checked)

    @staticmethod
    def _bad(table: str, seq: int, problem: str, txn_checked: int, audit_checked: int,
             checked: int) -> VerifyReport:
        if table == "txn":
            txn_checked = checked
        else:
            audit_checked = checked
        return VerifyReport(False, txn_checked, audit_checked, seq, table, f"{table} row {seq}: {problem}")

    def _chain_records(self, table: str) -> Iterator[tuple[dict[str, Any], str, str]]:
        after = -(2**62)
        while True:
            if table == "txn":
                rows = self._d.read(f"SELECT {TXN_COLUMNS} FROM txn WHERE seq > ? ORDER BY seq LIMIT 2000",
                                  (after,))
                if not rows:
                    return
                for values in rows:
                    try:
                        row = row_of(values)
                        yield row.signed_record(), row.row_hash, row.signature
                    except (ValueError, TypeError, KeyError) as exc:
                        yield {"seq": values[0], "unreadable": str(exc)}, "", ""
                after = rows[-1][0]
            else:
                rows = self._d.read(
                    "SELECT seq, terminal_id, at, event, actor, details, prev_hash, row_hash, signature "
                    "FROM audit WHERE seq > ? ORDER BY seq LIMIT 2000", (after,))
                if not rows:
                    return
                for seq, term, at, event, actor, details, prev, row_hash, signature in rows:
                    record = {"seq": seq, "terminal_id": term, "at": at, "event": event, "actor": actor,
                              "details": json.loads(details), "prev_hash": prev}
                    yield record, row_hash, signature
                after = rows[-1][0]
