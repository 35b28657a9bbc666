"""A write session: one `BEGIN IMMEDIATE` transaction in which a decision reads what it needs and its
outcome is appended, so that no other thread or process can pass a limit between the two.

At the start of a session the journal's authenticated head is checked (cheaply: see
`terminal.journal.state`). A head that fails its MAC or does not match the chains puts the journal on
hold: the counters are counted again from the rows, the hold's reason is stored in the head and an
audit row records it; every later session sees the hold (offline approvals stay off) until a
technician resolves it (`Journal.resolve_hold`). Nothing the session writes can erase the finding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sqlite3
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from terminal.errors import CodeAlreadyUsed, JournalIntegrityError
from terminal.journal.deny import DenyList
from terminal.journal.ids import new_txn_id
from terminal.journal.record import (
    AUDIT_SIGNED_FIELDS,
    AUTH_MODES,
    DECISIONS,
    KINDS,
    CodeClaim,
    NewTransaction,
    TxnRow,
    canonical_json,
    canonical_txn_parts,
    check_plain,
    json_str,
    reasons_json,
    record_hash,
    sealed_digest,
    utc_text,
)
from terminal.journal.state import OFFLINE_MODES, SALE_KINDS, ZERO_CARD, CardDay, Head, StateBook
from terminal.security import TerminalKeys

log = logging.getLogger("walletpos.journal")

INSERT_TXN = (
    "INSERT INTO txn (seq, id, terminal_id, created_at, business_date, kind, amount, currency, method, scheme, "
    "card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_card_sha256, details, "
    "prev_hash, row_hash, short_ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Session:
    """The journal inside one write transaction (see the module docstring). Made by
    `Journal.session()`; usable only inside its `with` block."""

    def __init__(self, db: sqlite3.Connection, *, terminal_id: str, keys: TerminalKeys, state: StateBook,
                 deny: DenyList, now: datetime) -> None:
        self.db = db
        self.terminal_id = terminal_id
        self._keys = keys
        self._state = state
        self._deny = deny
        self._now = now
        self.dirty = False
        self._cards: dict[tuple[str, str], CardDay] = {}
        try:
            self.head, self.version = state.current(db)
        except JournalIntegrityError as exc:
            self.version = int(db.execute("PRAGMA data_version").fetchone()[0])
            self.head = self._reheaded(exc.message)

    # -- integrity --------------------------------------------------------------------------------

    @property
    def problem(self) -> str | None:
        """Why offline approvals are off (the integrity hold), or None."""
        return self.head.hold

    def _chain_head(self, table: str) -> tuple[int, str]:
        last = self.db.execute(f"SELECT seq, row_hash FROM {table} ORDER BY seq DESC LIMIT 1").fetchone()
        if last is None:
            return 0, Head().txn_hash
        return last[0], last[1].hex() if isinstance(last[1], bytes) else last[1]

    def _reheaded(self, problem: str) -> Head:
        """After a problem: the head taken from the rows as they are, counters counted again, on hold."""
        log.error("journal integrity in doubt, offline approvals turned off: %s", problem)
        try:
            old = self._state.read_head(self.db)
        except JournalIntegrityError:
            old = Head()
        txn_seq, txn_hash = self._chain_head("txn")
        audit_seq, audit_hash = self._chain_head("audit")
        head = dataclasses.replace(old, txn_seq=max(txn_seq, old.archived_seq), txn_hash=txn_hash,
                                   audit_seq=audit_seq, audit_hash=audit_hash)
        if txn_seq <= old.archived_seq:
            head = dataclasses.replace(head, txn_hash=old.archived_hash)
        head = self._state.derive_counters(self.db, head)
        self.head = dataclasses.replace(head, hold=old.hold or problem)
        self.dirty = True
        self.audit("integrity_hold", now=self._now, details={"problem": problem[:500]})
        return self.head

    def hold(self, problem: str) -> None:
        """Turn offline approvals off with `problem` as the reason (kept until a technician resolves it)."""
        if self.head.hold is None:
            log.error("journal on hold, offline approvals turned off: %s", problem)
            self.head = dataclasses.replace(self.head, hold=problem)
            self.dirty = True
            self.audit("integrity_hold", now=self._now, details={"problem": problem[:500]})

    # -- what decisions read ----------------------------------------------------------------------

    def card_day(self, token: str | None, business_date: date) -> CardDay:
        """What this card (or wallet) had approved on `business_date` at this terminal."""
        if not token:
            return CardDay()
        return self._card_totals(token, business_date.isoformat())

    def _card_totals(self, token: str, day: str) -> CardDay:
        cached = self._cards.get((token, day))
        if cached is not None:
            return cached
        try:
            totals = self._state.card_day_at(self.db, self.version, token, day)
        except JournalIntegrityError as exc:
            self._state.rebuild_card_days(self.db, day)
            self.hold(exc.message)
            totals = self._state.card_day(self.db, token, day)
        self._cards[(token, day)] = totals
        return totals

    def denied(self, token: str | None) -> bool:
        """Is `token` on the deny list (the list the authenticated head describes)?"""
        if not token:
            return False
        head = self.head
        try:
            return self._deny.contains_in(self.db, token, version=head.deny_version, count=head.deny_count,
                                          digest=head.deny_digest)
        except JournalIntegrityError as exc:
            self.hold(exc.message)
            return bool(self.db.execute("SELECT 1 FROM deny_list WHERE card_token = ?", (token,)).fetchone())

    def guard(self, name: str) -> Any:
        """An authenticated value (`StateBook.guard`) as this transaction sees it; JournalIntegrityError
        when it fails its MAC."""
        return self._state.guard(self.db, name)

    def set_guard(self, name: str, value: Mapping[str, Any] | None) -> None:
        """Store (or, with None, remove) an authenticated value in this transaction."""
        self._state.set_guard(self.db, name, value)

    def forget_guards(self, first: str, before: str) -> int:
        """Remove the authenticated values whose names sort from `first` up to (not including)
        `before` (a key range: no scan)."""
        return int(self.db.execute("DELETE FROM state WHERE key >= ? AND key < ?",
                                   (f"guard|{first}", f"guard|{before}")).rowcount)

    def newest_row_of(self, card_token: str, kind: str, since: date) -> tuple[int, str] | None:
        """Sequence number and row hash of the newest `kind` row of a card on or after business day
        `since` (the card-and-day index; what a card's authenticated state is checked against)."""
        row = self.db.execute("SELECT seq, row_hash FROM txn WHERE card_token = ? AND business_date >= ? AND kind = ? "
                              "ORDER BY seq DESC LIMIT 1", (card_token, since.isoformat(), kind)).fetchone()
        if row is None:
            return None
        return int(row[0]), row[1].hex() if isinstance(row[1], bytes) else str(row[1])

    # -- writing -----------------------------------------------------------------------------------

    def update_head(self, **changes: Any) -> Head:
        self.head = dataclasses.replace(self.head, **changes)
        self.dirty = True
        return self.head

    def append(self, txn: NewTransaction, *, now: datetime, business_date: date,
               claim: CodeClaim | None = None) -> TxnRow:
        """Append one transaction (hash-chained; signed later, see `Transactions.sign_pending`).

        With `claim`, the wallet code is marked used in the same transaction: a code already used
        raises `CodeAlreadyUsed` and the whole session is rolled back."""
        if txn.kind not in KINDS:
            raise ValueError(f"unknown kind {txn.kind!r}")
        if txn.decision not in DECISIONS:
            raise ValueError(f"unknown decision {txn.decision!r}")
        if txn.auth_mode not in AUTH_MODES:
            raise ValueError(f"unknown auth mode {txn.auth_mode!r}")
        details = dict(txn.details) if txn.details else {}
        if details:
            check_plain(details, "details")
        txn_id = txn.id or new_txn_id()
        created_at = utc_text(now)
        day = business_date.isoformat()
        amount = txn.amount
        cur = amount.currency.alpha
        reasons_text, details_json = reasons_json(txn.reasons), (canonical_json(details) if details else "{}")
        sealed = sealed_digest(txn.sealed_card)
        head_json, middle_json, tail_json = canonical_txn_parts(
            amount=amount.minor, auth_mode=txn.auth_mode, business_date=day, card_token=txn.card_token,
            created_at=created_at, currency=cur, decision=txn.decision, details_json=details_json, id=txn_id,
            kind=txn.kind, masked_pan=txn.masked_pan, method=txn.method, operator=txn.operator,
            reasons_json=reasons_text, reference=txn.reference, scheme=txn.scheme,
            sealed_card_sha256=None if sealed is None else sealed.hex(), terminal_id=self.terminal_id,
        )
        approved = txn.decision == "approved"
        token = txn.card_token
        counted = approved and token is not None and txn.kind in SALE_KINDS
        totals = self._card_totals(token, day) if counted and token is not None else None  # before this row is in
        head = self.head
        seq, prev = head.txn_seq + 1, head.txn_hash
        raw_digest = hashlib.sha256(f"{head_json}{json_str(prev)}{middle_json}{seq}{tail_json}".encode()).digest()
        day_count = head.day_count + 1 if head.day == day else 1
        short_ref = f"{day_count:04d}"
        db = self.db
        db.execute(INSERT_TXN, (seq, txn_id, self.terminal_id, created_at, day, txn.kind, amount.minor, cur,
                                txn.method, txn.scheme, txn.card_token, txn.masked_pan, txn.decision, reasons_text,
                                txn.auth_mode, txn.reference, txn.operator, sealed, details_json,
                                bytes.fromhex(prev), raw_digest, short_ref))
        if txn.sealed_card is not None:  # its own table: dropped once the backend holds the row, its pages reused
            db.execute("INSERT INTO sealed_card (seq, data) VALUES (?, ?)", (seq, txn.sealed_card))
        if claim is not None:
            try:
                db.execute("INSERT INTO used_codes (wallet_id, counter, key_id, txn_id, used_at) "
                           "VALUES (?, ?, ?, ?, ?)", (claim.wallet_id, claim.counter, claim.key_id, txn_id, created_at))
            except sqlite3.IntegrityError:
                raise CodeAlreadyUsed(f"wallet code {claim.wallet_id}/{claim.counter} was already used") from None
        exposed = approved and txn.kind in SALE_KINDS and txn.auth_mode in OFFLINE_MODES
        digest = raw_digest.hex()
        self.head = Head(
            seq, digest, head.audit_seq, head.audit_hash, head.pending + 1,
            head.exposure + amount.minor if exposed else head.exposure,
            head.approved + approved, head.declined + (not approved), head.accepted, head.duplicate,
            head.declined_after_offline, head.rejected, head.resolved, head.archived_seq, head.archived_hash,
            head.last_sync_ok_at, head.hold, head.deny_version, head.deny_count, head.deny_digest, head.signed_seq,
            day, day_count)
        self.dirty = True
        if totals is not None and token is not None:
            offline = txn.auth_mode in OFFLINE_MODES
            new = CardDay(totals.offline_count + offline, totals.offline_amount + (amount.minor if offline else 0),
                          totals.amount + amount.minor)
            self._state.write_card_day_at(db, self.version, token, day, new, exists=totals != ZERO_CARD)
            self._cards[(token, day)] = new
        return TxnRow(seq, txn_id, self.terminal_id, now if now.tzinfo is UTC else now.astimezone(UTC),
                      business_date, txn.kind, amount, txn.method, txn.scheme, txn.card_token, txn.masked_pan,
                      txn.decision, txn.reasons, txn.auth_mode, txn.reference, txn.operator, txn.sealed_card,
                      details, prev, digest, None, "pending", 0, None, None, None, short_ref,
                      None if sealed is None else sealed.hex())

    def audit(self, event: str, *, now: datetime, actor: str | None = None,
              details: Mapping[str, Any] | None = None) -> int:
        """Append a signed audit row; returns its sequence number."""
        values = dict(details or {})
        check_plain(values, "audit details")
        head = self.head
        seq, prev = head.audit_seq + 1, head.audit_hash
        record: dict[str, Any] = {"seq": seq, "terminal_id": self.terminal_id, "at": utc_text(now), "event": event,
                                  "actor": actor, "details": values, "prev_hash": prev}
        digest = record_hash(record, AUDIT_SIGNED_FIELDS)
        signature = self._keys.sign(bytes.fromhex(digest)).hex()
        self.db.execute(
            "INSERT INTO audit (seq, terminal_id, at, event, actor, details, prev_hash, row_hash, signature) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, self.terminal_id, record["at"], event, actor, canonical_json(values), prev, digest, signature))
        self.head = dataclasses.replace(head, audit_seq=seq, audit_hash=digest)
        self.dirty = True
        return seq

    def finish(self) -> int:
        """Store the head (before COMMIT); returns the data version of this transaction (what the
        connection reads after its own commit until another connection writes)."""
        if self.dirty:
            self._state.write_head(self.db, self.head)
        return self.version
