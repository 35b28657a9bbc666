"""The terminal's own merchant codes: recorded before they are shown, closed at the backend."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from terminal.core.money import Money, currency
from terminal.journal.db import Database
from terminal.journal.record import parse_utc, utc_text


class MerchantCodes:
    def __init__(self, database: Database):
        self._d = database

    def open(self, reference: str, txn_id: str, amount: Money, operator: str | None, *,
                           now: datetime) -> None:
        """Remember a merchant code before it is shown: until it is closed (paid, cancelled at the
        backend) a payment for it can arrive, and the terminal must be able to record it."""
        try:
            with self._d.write() as db:
                db.execute("INSERT INTO merchant_codes (reference, txn_id, amount, currency, operator, shown_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (reference, txn_id, amount.minor, amount.currency.alpha, operator, utc_text(now)))
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "record the merchant code") from None

    def request_close(self, reference: str) -> None:
        """The code left the screen unpaid: it must be closed at the backend (now, or when it answers)."""
        try:
            with self._d.write() as db:
                db.execute("UPDATE merchant_codes SET close_requested = 1 WHERE reference = ?", (reference,))
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "update the merchant code") from None

    def close(self, reference: str, outcome: str, *, now: datetime) -> None:
        try:
            with self._d.write() as db:
                db.execute("UPDATE merchant_codes SET closed_at = ?, outcome = ? WHERE reference = ? "
                           "AND closed_at IS NULL", (utc_text(now), outcome, reference))
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "close the merchant code") from None

    def still_open(self) -> list[dict[str, Any]]:
        """Merchant codes shown and not yet closed, oldest first."""
        rows = self._d.read("SELECT reference, txn_id, amount, currency, operator, shown_at, close_requested "
                          "FROM merchant_codes WHERE closed_at IS NULL ORDER BY shown_at")
        return [{"reference": r, "txn_id": t, "amount": Money(a, currency(c)), "operator": o,
                 "shown_at": parse_utc(at), "close_requested": bool(cr)} for r, t, a, c, o, at, cr in rows]

