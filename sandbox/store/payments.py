"""Payments the backend takes part in: online authorisations (one answer per transaction id, the
same again when asked again) and the terminals' merchant QR codes.

A merchant code belongs to the terminal that registered it (`POST /v1/payments`, before the code
is shown), from that moment on. To any other terminal, and for a reference nobody registered, the
code does not exist: status, cancel and the wallet app's payment all answer 404
`payment_not_found`, the same answer in both cases, so a terminal cannot even learn that another
terminal's reference exists by asking about it."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any, TypeGuard

from terminal.errors import SecurityError

from ..errors import Refused
from .database import Database
from .keys import Keys

_AUTH_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
DEFAULT_TEST_PIN = "1234"  # every card's PIN until the admin API sets another


def pin_hash(card_token: str, pin: str) -> str:
    return hashlib.sha256(f"{card_token}:{pin}".encode()).hexdigest()


def _hex(value: object, digits: int) -> TypeGuard[str]:
    """Is `value` text of exactly `digits` hex digits (how the terminal sends card data elements)?"""
    return isinstance(value, str) and len(value) == digits and all(c in "0123456789abcdefABCDEF" for c in value)


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
            elif body.get("sealed_card") and not self._sealed_card_opens(body["sealed_card"]):
                reason = "sealed_card_unreadable"
            elif body["method"] == "qr_cpm":
                reason = self._cpm_problem(db, token, body.get("details") or {})
            details = body.get("details") or {}
            if reason is None and isinstance(details, dict) and details.get("sealed_pin") is not None:
                reason = self._check_pin(db, body, details["sealed_pin"])
            status = "declined" if reason else "approved"
            code = "".join(secrets.choice(_AUTH_CODE_ALPHABET) for _ in range(6)) if status == "approved" else None
            decided_at = self.db.now_text()
            db.execute("INSERT INTO authorisations (terminal_id, id, request_digest, status, reason, auth_code, "
                       "decided_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (terminal_id, body["id"], digest, status, reason, code, decided_at))
        return {"id": body["id"], "status": status, "reason": reason, "auth_code": code, "decided_at": decided_at}

    def _sealed_card_opens(self, sealed: str) -> bool:
        try:
            self.keys.open_sealed(sealed)
        except (SecurityError, ValueError):
            return False
        return True

    @staticmethod
    def _cpm_problem(db: Any, token: str | None, details: Mapping[str, Any]) -> str | None:
        """The issuer's checks of a consumer-presented code, as far as a sandbox can make them: it holds
        no card keys, so it cannot recompute the ARQC; it refuses what no issuer would accept: no
        cryptogram, an all-zero one, a cryptogram that is not an ARQC (the card asks to go online), and a
        transaction counter (ATC) this card has already used (a replayed code)."""
        cryptogram, cid, atc = details.get("cryptogram"), details.get("cid"), details.get("atc")
        if not _hex(cryptogram, 16) or set(cryptogram) <= {"0"}:
            return "cryptogram_missing"
        if not _hex(cid, 2) or int(cid, 16) & 0xC0 != 0x80:
            return "cryptogram_not_arqc"
        if not _hex(atc, 4) or not token:
            return "cryptogram_missing"
        if db.execute("SELECT 1 FROM cpm_counters WHERE card_token = ? AND atc = ?", (token, atc)).fetchone():
            return "cryptogram_replayed"
        db.execute("INSERT INTO cpm_counters (card_token, atc) VALUES (?, ?)", (token, atc))
        return None
    def _check_pin(self, db: Any, body: Mapping[str, Any], sealed: Any) -> str | None:
        """The customer's PIN, sealed by the PIN pad to this backend's key with the card token and the
        amount it authorises: a reason to decline (unreadable, bound to another payment, wrong), or
        None. Each card's test PIN is the one set with the admin API, else DEFAULT_TEST_PIN."""
        try:
            block = json.loads(self.keys.open_sealed(str(sealed)))
        except (SecurityError, ValueError):
            return "pin_unreadable"
        if not isinstance(block, dict) or not isinstance(block.get("pin"), str):
            return "pin_unreadable"
        if (block.get("card_token"), block.get("amount"), block.get("currency")) != (
                body.get("card_token"), body["amount"], body["currency"]):
            return "pin_block_mismatch"
        token = body.get("card_token") or ""
        row = db.execute("SELECT pin_hash FROM card_pins WHERE card_token = ?", (token,)).fetchone()
        expected = row[0] if row is not None else pin_hash(token, DEFAULT_TEST_PIN)
        return None if hmac.compare_digest(pin_hash(token, block["pin"]), expected) else "incorrect_pin"

    def set_card_pin(self, card_token: str, pin: str) -> None:
        """The test PIN of one card (by its token)."""
        if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
            raise Refused(422, "invalid_request", "a PIN is 4 to 12 digits")
        with self.db.transaction() as db:
            db.execute("INSERT INTO card_pins (card_token, pin_hash, set_at) VALUES (?, ?, ?) ON CONFLICT (card_token) "
                       "DO UPDATE SET pin_hash = excluded.pin_hash, set_at = excluded.set_at",
                       (card_token, pin_hash(card_token, pin), self.db.now_text()))

    def authorisation_count(self) -> int:
        row = self.db.one("SELECT COUNT(*) FROM authorisations")
        return row[0] if row else 0

    # -- merchant QR codes ------------------------------------------------------------------------

    def register(self, terminal_id: str, reference: str, amount: int, currency: str,
                 valid_until: str) -> tuple[bool, dict[str, Any]]:
        """Record a merchant code and its owner before the code is shown. Returns (created, code).
        Registering the same code again (same owner, amount, currency, end) is answered the same;
        a reference another terminal registered, or this one registered with other terms, is
        refused (409)."""
        terms = (amount, currency, valid_until)
        with self.db.transaction() as db:
            row = db.execute("SELECT terminal_id, registered_amount, registered_currency, valid_until, registered_at "
                             "FROM payments WHERE reference = ?", (reference,)).fetchone()
            if row is None:
                db.execute("INSERT INTO payments (reference, status, terminal_id, registered_amount, "
                           "registered_currency, valid_until, registered_at) VALUES (?, 'pending', ?, ?, ?, ?, ?)",
                           (reference, terminal_id, amount, currency, valid_until, self.db.now_text()))
                created = True
            elif row[0] != terminal_id:
                raise Refused(409, "reference_taken", f"merchant code reference {reference} belongs to another "
                                                      "terminal; make a new reference")
            elif row[4] is not None and tuple(row[1:4]) != terms:
                raise Refused(409, "reference_reused", f"merchant code {reference} was registered for another "
                                                       "amount, currency or end of validity")
            else:
                created = row[4] is None  # a code this terminal asked about before codes were registered
                if created:
                    db.execute("UPDATE payments SET registered_amount = ?, registered_currency = ?, valid_until = ?, "
                               "registered_at = ? WHERE reference = ?", (*terms, self.db.now_text(), reference))
        return created, self.code(reference)

    def code(self, reference: str) -> dict[str, Any]:
        row = self.db.one("SELECT registered_amount, registered_currency, valid_until, registered_at, status "
                          "FROM payments WHERE reference = ?", (reference,))
        assert row is not None
        amount, currency, valid_until, registered_at, status = row
        return {"reference": reference, "amount": amount, "currency": currency, "valid_until": valid_until,
                "registered_at": registered_at, "status": status}

    def mark_paid(self, reference: str, amount: int | None, currency: str | None, card_token: str | None,
                  terminal_id: str | None = None) -> dict[str, Any]:
        """The customer pays the code in the wallet app (the sandbox's stand-in for the app).
        `terminal_id` is the terminal label in the code, when the app passes it on; without
        `amount` and `currency` the app pays what the code asks."""
        with self.db.transaction() as db:
            row = self._registered(db, reference, terminal_id)
            if row["status"] == "cancelled":
                raise Refused(409, "payment_cancelled", f"the merchant closed code {reference}; it cannot be paid")
            db.execute("UPDATE payments SET status = 'paid', amount = ?, currency = ?, paid_at = ?, card_token = ? "
                       "WHERE reference = ?",
                       (row["amount"] if amount is None else amount, row["currency"] if currency is None else currency,
                        self.db.now_text(), card_token, reference))
        return self.status(reference)

    def cancel(self, reference: str, terminal_id: str) -> dict[str, Any]:
        """Close a merchant code: unpaid -> cancelled (the app can no longer pay it); paid stays paid."""
        with self.db.transaction() as db:
            self._registered(db, reference, terminal_id)
            db.execute("UPDATE payments SET status = 'cancelled' WHERE reference = ? AND status = 'pending'",
                       (reference,))
        return self.status(reference)

    def status_for(self, reference: str, terminal_id: str) -> dict[str, Any]:
        """What became of a code, asked by the terminal that registered it."""
        with self.db.lock:
            self._registered(self.db.connection, reference, terminal_id)
            return self.status(reference)

    @staticmethod
    def _registered(db: Any, reference: str, terminal_id: str | None) -> dict[str, Any]:
        row = db.execute("SELECT terminal_id, registered_at, status, registered_amount, registered_currency "
                         "FROM payments WHERE reference = ?", (reference,)).fetchone()
        if row is None or row[1] is None or (terminal_id is not None and row[0] != terminal_id):
            whose = f"terminal {terminal_id}" if terminal_id is not None else "any terminal"
            raise Refused(404, "payment_not_found", f"no merchant code {reference} was registered by {whose}")
        return {"owner": row[0], "status": row[2], "amount": row[3], "currency": row[4]}

    def status(self, reference: str) -> dict[str, Any]:
        row = self.db.one("SELECT status, amount, currency, paid_at, card_token FROM payments WHERE reference = ?",
                          (reference,))
        status, amount, cur, paid_at, token = row or ("pending", None, None, None, None)
        return {"reference": reference, "status": status, "amount": amount, "currency": cur, "paid_at": paid_at,
                "card_token": token}
