"""The audit log: sign-ins, refused refunds, day closes, operator changes, integrity holds; a chain of
its own, each row signed at once (audit rows are rare)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from terminal.journal.db import Database
from terminal.journal.session import Session


class AuditLog:
    def __init__(self, database: Database, session: Callable[..., AbstractContextManager[Session]]) -> None:
        self._d = database
        self._session = session

    def record(self, event: str, *, now: datetime, actor: str | None = None,
               details: Mapping[str, Any] | None = None) -> int:
        """Append a signed audit row in its own write session; returns its sequence number."""
        with self._session(now=now) as session:
            return session.audit(event, now=now, actor=actor, details=details)

    def rows(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._d.read(
            "SELECT seq, at, event, actor, details FROM audit ORDER BY seq DESC LIMIT ?", (limit,)
        )
        return [{"seq": s, "at": a, "event": e, "actor": ac, "details": json.loads(d)} for s, a, e, ac, d in rows]
