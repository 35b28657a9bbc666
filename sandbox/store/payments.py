"""Payments the backend takes part in: online authorisations (one answer per transaction id, the
same again when asked again) and the terminals' merchant QR codes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from terminal.errors import SecurityError

from ..errors import Refused
from .database import Database
from .keys import Keys

_AUTH_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


class Payments:
    def __init__(self, db: Database, keys: Keys):
        self.db = db
        self.keys = keys

    # -- online authorisation ---------------------------------------------------------------------

    def authorise(self, terminal_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        digest = json.dumps([body["amount"], body["currency"], body.get("card_token"), body["method"]])
        with self.db.transaction() as db:
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
                    self.keys.open_sealed(body["sealed_card"])
                except (SecurityError, ValueError):
                    reason = "sealed_card_unreadable"
            status = "declined" if reason else "approved"
            code = "".join(secrets.choice(_AUTH_CODE_ALPHABET) for _ in range(6)) if status == "approved" else None
            decided_at = self.db.now_text()
            db.execute("INSERT INTO authorisations (terminal_id, id, request_digest, status, reason, auth_code, "
                       "decided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (terminal_id, body["id"], digest, status, reason, code, decided_at))
        return {"id": body["id"], "status": status, "reason": reason, "auth_code": code, "decided_at": decided_at}

    def authorisation_count(self) -> int:
        row = self.db.one("SELECT COUNT(*) FROM authorisations")
        return row[0] if row else 0

    # -- merchant QR codes ------------------------------------------------------------------------

    # A merchant code belongs to the terminal that showed it: the first terminal that asks about a
    # reference (or the terminal named in the code the app paid) owns it, and to any other terminal
    # the reference does not exist (404, the same answer as for a reference nobody knows).

    @staticmethod
    def _claim(db: Any, reference: str, terminal_id: str | None) -> None:
        row = db.execute("SELECT terminal_id FROM payments WHERE reference = ?", (reference,)).fetchone()
        if row is None:
            db.execute("INSERT INTO payments (reference, status, terminal_id) VALUES (?, 'pending', ?)",
                       (reference, terminal_id))
        elif row[0] is None:
            db.execute("UPDATE payments SET terminal_id = ? WHERE reference = ?", (terminal_id, reference))
        elif terminal_id is not None and row[0] != terminal_id:
            raise Refused(404, "payment_not_found", f"no merchant code {reference} from this terminal")

    def mark_paid(self, reference: str, amount: int | None, currency: str | None, card_token: str | None,
                  terminal_id: str | None = None) -> dict[str, Any]:
        """The customer pays the code in the wallet app (the sandbox's stand-in for the app);
        `terminal_id` is the terminal label in the code, when the app passes it on."""
        with self.db.transaction() as db:
            self._claim(db, reference, terminal_id)
            row = db.execute("SELECT status FROM payments WHERE reference = ?", (reference,)).fetchone()
            if row[0] == "cancelled":
                raise Refused(409, "payment_cancelled", f"the merchant closed code {reference}; it cannot be paid")
            db.execute("UPDATE payments SET status = 'paid', amount = ?, currency = ?, paid_at = ?, card_token = ? "
                       "WHERE reference = ?", (amount, currency, self.db.now_text(), card_token, reference))
        return self.status(reference)

    def cancel(self, reference: str, terminal_id: str) -> dict[str, Any]:
        """Close a merchant code: unpaid -> cancelled (the app can no longer pay it); paid stays paid."""
        with self.db.transaction() as db:
            self._claim(db, reference, terminal_id)
            db.execute("UPDATE payments SET status = 'cancelled' WHERE reference = ? AND status = 'pending'",
                       (reference,))
        return self.status(reference)

    def status_for(self, reference: str, terminal_id: str) -> dict[str, Any]:
        """What became of a code, asked by `terminal_id` (which then owns it if nobody did)."""
        with self.db.transaction() as db:
            self._claim(db, reference, terminal_id)
        return self.status(reference)

    def status(self, reference: str) -> dict[str, Any]:
        row = self.db.one("SELECT status, amount, currency, paid_at, card_token FROM payments WHERE reference = ?",
                          (reference,))
        status, amount, cur, paid_at, token = row or ("pending", None, None, None, None)
        return {"reference": reference, "status": status, "amount": amount, "currency": cur, "paid_at": paid_at,
                "card_token": token}
