"""Operator records (PIN hashes, failed attempts, lockouts); the checks are in terminal.operators."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from terminal.journal.db import Database
from terminal.journal.record import utc_text


class OperatorStore:
    def __init__(self, database: Database):
        self._d = database

    _OPERATOR_COLUMNS = ("id", "name", "role", "pin_salt", "pin_hash", "failed_attempts", "locked_until", "active")

    def record(self, operator_id: str) -> dict[str, Any] | None:
        rows = self._d.read(f"SELECT {', '.join(self._OPERATOR_COLUMNS)} FROM operators WHERE id = ?", (operator_id,))
        return dict(zip(self._OPERATOR_COLUMNS, rows[0], strict=True)) if rows else None

    def records(self) -> list[dict[str, Any]]:
        rows = self._d.read(f"SELECT {', '.join(self._OPERATOR_COLUMNS)} FROM operators ORDER BY role, id")
        return [dict(zip(self._OPERATOR_COLUMNS, r, strict=True)) for r in rows]

    def save(self, operator_id: str, name: str, role: str, salt: bytes, pin_hash: bytes, *,
                      now: datetime) -> None:
        try:
            with self._d.write() as db:
                db.execute(
                    "INSERT INTO operators (id, name, role, pin_salt, pin_hash, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET name = excluded.name, role = excluded.role, "
                    "pin_salt = excluded.pin_salt, pin_hash = excluded.pin_hash, failed_attempts = 0, "
                    "locked_until = NULL, active = 1",
                    (operator_id, name, role, salt.hex(), pin_hash.hex(), utc_text(now)),
                )
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "save the operator") from None

    def set_failures(self, operator_id: str, failures: int, locked_until: str | None) -> None:
        try:
            with self._d.write() as db:
                db.execute("UPDATE operators SET failed_attempts = ?, locked_until = ? WHERE id = ?",
                           (failures, locked_until, operator_id))
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "record the PIN attempt") from None

