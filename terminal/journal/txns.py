"""Transactions: the signed, hash-chained rows of payments, refunds, voids and fares."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

from terminal.core.money import Money, currency
from terminal.errors import CodeAlreadyUsed, StorageError
from terminal.journal.db import Database
from terminal.journal.ids import new_txn_id
from terminal.journal.record import (
    AUTH_MODES,
    DECISIONS,
    GENESIS_HASH,
    KINDS,
    CodeClaim,
    NewTransaction,
    PayerTotals,
    TxnRow,
    canonical_json,
    canonical_txn_parts,
    check_plain,
    json_str,
    parse_utc,
    reasons_json,
    utc_text,
)
from terminal.security import TerminalKeys

# A signed seal of both chain heads is written in the append's own transaction every SEAL_EVERY
# transactions (see `terminal.journal.chain`).
SEAL_EVERY = 32

INSERT_TXN = (
    "INSERT INTO txn (seq, id, terminal_id, created_at, business_date, kind, amount, currency, method, scheme, "
    "card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_card, details, prev_hash, "
    "row_hash, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
TXN_COLUMNS = (
    "seq, id, terminal_id, created_at, business_date, kind, amount, currency, method, scheme, "
    "card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_card, details, "
    "prev_hash, row_hash, signature, sync_state, sync_attempts, sync_error, sync_reason, synced_at"
)


def row_of(values: Sequence[Any]) -> TxnRow:
    """A stored row (the columns of TXN_COLUMNS, in order) as a TxnRow."""
    (seq, id_, terminal_id, created_at, business_date, kind, amount, cur, method, scheme,
     card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_card,
     details, prev_hash, row_hash, signature, sync_state, sync_attempts, sync_error,
     sync_reason, synced_at) = values
    return TxnRow(
        seq, id_, terminal_id, parse_utc(created_at), date.fromisoformat(business_date), kind,
        Money(amount, currency(cur)), method, scheme, card_token, masked_pan, decision, tuple(json.loads(reasons)),
        auth_mode, reference, operator, sealed_card, json.loads(details), prev_hash, row_hash, signature,
        sync_state, sync_attempts, sync_error, sync_reason, parse_utc(synced_at) if synced_at else None,
    )


class Transactions:
    """Appends and reads transaction rows over the journal's connection."""

    def __init__(self, database: Database, keys: TerminalKeys, seal: Callable[[sqlite3.Connection, str], None]):
        self._d = database
        self._keys = keys
        self._seal = seal
        self.terminal_id = database.terminal_id
        self._head: tuple[int, str] | None = None  # (seq, row_hash) of the newest row this connection knows

    def forget_head(self) -> None:
        self._head = None

    def append(self, txn: NewTransaction, *, now: datetime, business_date: date,
               claim: CodeClaim | None = None) -> TxnRow:
        """Sign and durably store one transaction; returns only after the commit is on disk.

        With `claim`, the wallet code is marked used in the same transaction: either both are
        stored or neither, and a code already used raises `CodeAlreadyUsed` (nothing stored)."""
        if txn.kind not in KINDS:
            raise ValueError(f"unknown kind {txn.kind!r}")
        if txn.decision not in DECISIONS:
            raise ValueError(f"unknown decision {txn.decision!r}")
        if txn.auth_mode not in AUTH_MODES:
            raise ValueError(f"unknown auth mode {txn.auth_mode!r}")
        details = dict(txn.details)
        if details:
            check_plain(details, "details")
        txn_id = txn.id or new_txn_id()
        created_at = utc_text(now)
        day = business_date.isoformat()
        amount = txn.amount
        cur = amount.currency.alpha
        reasons_text, details_json = reasons_json(txn.reasons), (canonical_json(details) if details else "{}")
        head_json, middle_json, tail_json = canonical_txn_parts(
            amount=amount.minor, auth_mode=txn.auth_mode, business_date=day, card_token=txn.card_token,
            created_at=created_at, currency=cur, decision=txn.decision, details_json=details_json, id=txn_id,
            kind=txn.kind, masked_pan=txn.masked_pan, method=txn.method, operator=txn.operator,
            reasons_json=reasons_text, reference=txn.reference, scheme=txn.scheme,
            sealed_card=txn.sealed_card, terminal_id=self.terminal_id,
        )
        db = self._d.db
        try:
            with self._d.lock:  # the write transaction inline (not `_write()`): this runs on every approval
                db.execute("BEGIN IMMEDIATE")
                try:
                    head = self._head
                    while True:
                        if head is None:
                            head = db.execute("SELECT seq, row_hash FROM txn ORDER BY seq DESC LIMIT 1").fetchone()
                            head = head or (0, GENESIS_HASH)
                        seq, prev = head[0] + 1, head[1]
                        raw_digest = hashlib.sha256(
                            f"{head_json}{json_str(prev)}{middle_json}{seq}{tail_json}".encode()).digest()
                        digest = raw_digest.hex()
                        signature = self._keys.sign(raw_digest).hex()
                        try:
                            db.execute(INSERT_TXN, (
                                seq, txn_id, self.terminal_id, created_at, day, txn.kind, amount.minor, cur,
                                txn.method, txn.scheme, txn.card_token, txn.masked_pan, txn.decision,
                                reasons_text, txn.auth_mode, txn.reference, txn.operator, txn.sealed_card,
                                details_json, prev, digest, signature))
                        except sqlite3.IntegrityError as exc:
                            if "txn.seq" in str(exc) and head is self._head:
                                head = None  # another process appended since: read the real head and retry
                                continue
                            raise
                        break
                    if claim is not None:
                        try:
                            db.execute("INSERT INTO used_codes (wallet_id, counter, key_id, txn_id, used_at) "
                                       "VALUES (?, ?, ?, ?, ?)",
                                       (claim.wallet_id, claim.counter, claim.key_id, txn_id, created_at))
                        except sqlite3.IntegrityError:
                            raise CodeAlreadyUsed(
                                f"wallet code {claim.wallet_id}/{claim.counter} was already used") from None
                    if seq % SEAL_EVERY == 0:
                        self._seal(db, created_at)
                    db.execute("COMMIT")
                except BaseException:
                    self._head = None
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"journal {self._d.path}: transaction {txn_id} not stored: {exc}") from None
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "record the transaction") from None
        self._head = (seq, digest)
        return TxnRow(seq, txn_id, self.terminal_id, now if now.tzinfo is UTC else now.astimezone(UTC),
                      business_date, txn.kind, amount, txn.method, txn.scheme, txn.card_token, txn.masked_pan,
                      txn.decision, txn.reasons, txn.auth_mode, txn.reference, txn.operator, txn.sealed_card,
                      details, prev, digest, signature, "pending", 0, None, None, None)

    def rows(self, where: str = "", params: Sequence[Any] = (), *, order: str = "seq",
              limit: int | None = None) -> list[TxnRow]:
        sql = f"SELECT {TXN_COLUMNS} FROM txn {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [row_of(r) for r in self._d.read(sql, params)]

    def get(self, txn_id: str) -> TxnRow | None:
        rows = self.rows("WHERE id = ?", (txn_id,))
        return rows[0] if rows else None

    def find(self, text: str) -> list[TxnRow]:
        """Rows whose id contains `text` (at least 6 characters: a shortened receipt reference)."""
        text = text.strip().lower()
        if len(text) < 6:
            return []
        like = "%" + text.replace("%", "\\%").replace("_", "\\_") + "%"
        return self.rows("WHERE id LIKE ? ESCAPE '\\'", (like,), order="seq DESC", limit=20)

    def recent(self, limit: int = 50, *, search: str | None = None, since: datetime | None = None) -> list[TxnRow]:
        """Newest first; `search` matches reference prefix, masked PAN digits, method, scheme or kind."""
        clauses, params = [], []
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(utc_text(since))
        if search:
            like = "%" + search.strip().replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append(
                "(id LIKE ? ESCAPE '\\' OR masked_pan LIKE ? ESCAPE '\\' OR method LIKE ? ESCAPE '\\' "
                "OR scheme LIKE ? ESCAPE '\\' OR kind LIKE ? ESCAPE '\\' OR decision LIKE ? ESCAPE '\\')"
            )
            params.extend([like] * 6)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return self.rows(where, params, order="seq DESC", limit=limit)

    def rows_since(self, since: datetime | None = None) -> Iterator[TxnRow]:
        """All rows in sequence order (created at or after `since`), fetched in pages."""
        after = 0
        while True:
            where, params = "WHERE seq > ?", [after]
            if since is not None:
                where += " AND created_at >= ?"
                params.append(utc_text(since))
            page = self.rows(where, params, limit=1000)
            if not page:
                return
            yield from page
            after = page[-1].seq

    def rows_after(self, seq: int) -> Iterator[TxnRow]:
        """All rows with a sequence number above `seq`, in order, fetched in pages."""
        after = seq
        while True:
            page = self.rows("WHERE seq > ?", (after,), limit=1000)
            if not page:
                return
            yield from page
            after = page[-1].seq

    def rows_for_day(self, business_date: date) -> list[TxnRow]:
        return self.rows("WHERE business_date = ?", (business_date.isoformat(),))

    def last_sale(self) -> TxnRow | None:
        rows = self.rows("WHERE kind IN ('sale', 'fare') AND decision = 'approved'", order="seq DESC", limit=1)
        return rows[0] if rows else None

    def related(self, original_id: str) -> list[TxnRow]:
        """Refunds and voids that reference a sale."""
        return self.rows("WHERE reference = ? AND kind IN ('refund', 'void')", (original_id,))

    def payer_totals(self, card_token: str | None, business_date: date) -> PayerTotals:
        if not card_token:
            return PayerTotals(0, 0, 0)
        rows = self._d.read(
            "SELECT COALESCE(SUM(amount), 0), "
            "COALESCE(SUM(CASE WHEN auth_mode IN ('offline', 'offline_fallback') THEN amount END), 0), "
            "COUNT(CASE WHEN auth_mode IN ('offline', 'offline_fallback') THEN 1 END) "
            "FROM txn WHERE card_token = ? AND business_date = ? AND decision = 'approved' "
            "AND kind IN ('sale', 'fare')",
            (card_token, business_date.isoformat()),
        )
        total, offline_amount, offline_count = rows[0]
        return PayerTotals(total, offline_amount, offline_count)


    def counts(self) -> dict[str, int]:
        rows = self._d.read(
            "SELECT COUNT(*), COUNT(CASE WHEN decision = 'approved' THEN 1 END), "
            "COUNT(CASE WHEN decision = 'declined' THEN 1 END), "
            "COUNT(CASE WHEN sync_state = 'pending' THEN 1 END), "
            "COUNT(CASE WHEN sync_state = 'declined_after_offline' THEN 1 END) FROM txn"
        )
        total, approved, declined, pending, dao = rows[0]
        return {"total": total, "approved": approved, "declined": declined, "pending_sync": pending,
                "declined_after_offline": dao}


    def code_used(self, wallet_id: str, counter: int) -> str | None:
        """The id of the transaction that used this wallet code, or None."""
        rows = self._d.read("SELECT txn_id FROM used_codes WHERE wallet_id = ? AND counter = ?", (wallet_id, counter))
        return rows[0][0] if rows else None

