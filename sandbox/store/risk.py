"""What the bank decides about cards and terminals: the deny list and its change log (downloaded by
the terminals as deltas), wallets marked out of funds, and the limits the bank sets for terminals."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import Refused
from .database import Database

LIMIT_NAMES = ("floor_limit", "cvm_required_limit", "contactless_transaction_limit", "offline_max_payment",
               "card_daily_amount", "card_daily_count", "exposure_cap", "max_hours_since_sync")


def flagged(db: sqlite3.Connection, table: str, records: Iterable[Mapping[str, Any]]) -> set[str]:
    """The card tokens of `records` found in `table` (deny_list or out_of_funds), read inside the
    caller's transaction."""
    tokens = sorted({r["card_token"] for r in records if r.get("card_token")})
    found: set[str] = set()
    for start in range(0, len(tokens), 500):
        chunk = tokens[start:start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(t for (t,) in db.execute(f"SELECT card_token FROM {table} WHERE card_token IN ({marks})", chunk))
    return found


class Risk:
    def __init__(self, db: Database):
        self.db = db

    # -- deny list --------------------------------------------------------------------------------

    def deny(self, card_token: str, reason: str = "blocked_by_issuer") -> int:
        with self.db.transaction() as db:
            db.execute("INSERT INTO deny_list (card_token, reason, added_at) VALUES (?, ?, ?) "
                       "ON CONFLICT(card_token) DO UPDATE SET reason = excluded.reason",
                       (card_token, reason, self.db.now_text()))
            db.execute("INSERT INTO deny_changes (card_token, action, reason, at) VALUES (?, 'add', ?, ?)",
                       (card_token, reason, self.db.now_text()))
        return self.deny_list_version()

    def deny_in(self, db: sqlite3.Connection, card_token: str, reason: str) -> bool:
        """Put a card on the deny list inside the caller's transaction (every terminal downloads it
        with the next delta); False when it was there already."""
        if db.execute("SELECT 1 FROM deny_list WHERE card_token = ?", (card_token,)).fetchone():
            return False
        at = self.db.now_text()
        db.execute("INSERT INTO deny_list (card_token, reason, added_at) VALUES (?, ?, ?)", (card_token, reason, at))
        db.execute("INSERT INTO deny_changes (card_token, action, reason, at) VALUES (?, 'add', ?, ?)",
                   (card_token, reason, at))
        return True

    def allow(self, card_token: str) -> int:
        with self.db.transaction() as db:
            db.execute("DELETE FROM deny_list WHERE card_token = ?", (card_token,))
            db.execute("INSERT INTO deny_changes (card_token, action, reason, at) VALUES (?, 'remove', '', ?)",
                       (card_token, self.db.now_text()))
        return self.deny_list_version()

    def deny_list_version(self) -> int:
        row = self.db.one("SELECT MAX(version) FROM deny_changes")
        return row[0] or 0 if row else 0

    def deny_delta(self, since: int, limit: int) -> dict[str, Any]:
        latest = self.deny_list_version()
        reset = since > latest
        if reset:
            since = 0
        rows = self.db.all("SELECT version, card_token, action, reason FROM deny_changes WHERE version > ? "
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

    # -- wallets out of funds ---------------------------------------------------------------------

    def set_out_of_funds(self, card_token: str, flag: bool = True) -> None:
        with self.db.transaction() as db:
            if flag:
                db.execute("INSERT INTO out_of_funds (card_token, at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           (card_token, self.db.now_text()))
            else:
                db.execute("DELETE FROM out_of_funds WHERE card_token = ?", (card_token,))
                # the debt is settled: a deny-list entry made by a decline after offline approval goes
                if db.execute("DELETE FROM deny_list WHERE card_token = ? AND reason = 'declined_after_offline'",
                              (card_token,)).rowcount:
                    db.execute("INSERT INTO deny_changes (card_token, action, reason, at) VALUES (?, 'remove', '', ?)",
                               (card_token, self.db.now_text()))

    # -- terminal limits --------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        text = self.db.meta("terminal_config")
        if not text:
            return {"version": 0, "currency": "CNY", "limits": dict.fromkeys(LIMIT_NAMES)}
        return json.loads(text)

    def set_config(self, currency: str, limits: Mapping[str, int | None]) -> dict[str, Any]:
        unknown = set(limits) - set(LIMIT_NAMES)
        if unknown:
            raise Refused(422, "invalid_request", f"unknown limits: {', '.join(sorted(unknown))}")
        with self.db.transaction() as db:
            current = self.config()
            body = {"version": current["version"] + 1, "currency": currency,
                    "limits": {name: limits.get(name) for name in LIMIT_NAMES}}
            self.db.set_meta(db, "terminal_config", json.dumps(body))
        return body
