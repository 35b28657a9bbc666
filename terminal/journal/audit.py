"""The audit log: sign-ins, refused refunds, day closes, operator changes; a signed chain of its own."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from terminal.journal.db import Database
from terminal.journal.record import (
    AUDIT_SIGNED_FIELDS,
    GENESIS_HASH,
    canonical_json,
    check_plain,
    record_hash,
    utc_text,
)
from terminal.security import TerminalKeys


class AuditLog:
    def __init__(self, database: Database, keys: TerminalKeys, seal: Callable[[sqlite3.Connection, str], None]):
        self._d = database
        self._keys = keys
        self._seal = seal

    def record(self, event: str, *, now: datetime, actor: str | None = None,
              details: Mapping[str, Any] | None = None) -> int:
        details = dict(details or {})
        check_plain(details, "audit details")
        record: dict[str, Any] = {"terminal_id": self._d.terminal_id, "at": utc_text(now), "event": event,
                                  "actor": actor, "details": details}
        try:
            with self._d.write() as db:
                head = db.execute("SELECT seq, row_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
                record.update(seq=seq, prev_hash=prev)
                digest = record_hash(record, AUDIT_SIGNED_FIELDS)
                signature = self._keys.sign(bytes.fromhex(digest)).hex()
                db.execute(
                    "INSERT INTO audit (seq, terminal_id, at, event, actor, details, prev_hash, row_hash, "
                    "signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seq, self._d.terminal_id, record["at"], event, actor, canonical_json(details), prev, digest,
                     signature),
                )
                self._seal(db, record["at"])
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "write the audit log") from None
        return seq

    def rows(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._d.read(
            "SELECT seq, at, event, actor, details FROM audit ORDER BY seq DESC LIMIT ?", (limit,)
        )
        return [{"seq": s, "at": a, "event": e, "actor": ac, "details": json.loads(d)} for s, a, e, ac, d in rows]

