"""Transactions: the hash-chained rows of payments, refunds, voids and fares.

Appending happens in a write session (`terminal.journal.session`): a decision and its row in one
transaction. Rows are hash-chained at once and signed with the terminal key shortly after
(`sign_pending`: housekeeping, before every upload, on close), off the payment's path; until then
the journal's authenticated head vouches for them. Reads use the reader connections and are bounded:
every query on a path a person or a gate waits on is an index lookup or a range of the newest rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any

from terminal.core.money import Money, currency
from terminal.core.reports import BatchTotals, RowGroup, RowMark
from terminal.errors import JournalIntegrityError
from terminal.journal.db import Database
from terminal.journal.record import (
    CodeClaim,
    NewTransaction,
    TxnRow,
    canonical_txn_parts,
    json_str,
    parse_utc,
    sealed_digest,
    utc_text,
)
from terminal.journal.session import Session
from terminal.journal.state import StateBook
from terminal.security import TerminalKeys

log = logging.getLogger("walletpos.journal")

TXN_COLUMNS = (
    "seq, id, terminal_id, created_at, business_date, kind, amount, currency, method, scheme, "
    "card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_card_sha256, details, "
    "prev_hash, row_hash, signature, sync_state, sync_attempts, sync_error, sync_reason, synced_at, short_ref, "
    "(SELECT data FROM sealed_card WHERE sealed_card.seq = txn.seq)"
)  # the first 20 are the signed record's fields
SEARCH_WINDOW = 50_000  # word searches (scheme, method, result) look at this many newest rows
SIGN_BATCH = 2000


def _hex(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


def row_of(values: Sequence[Any]) -> TxnRow:
    """A stored row (the columns of TXN_COLUMNS, in order) as a TxnRow."""
    (seq, id_, terminal_id, created_at, business_date, kind, amount, cur, method, scheme,
     card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_sha,
     details, prev_hash, row_hash, signature, sync_state, sync_attempts, sync_error,
     sync_reason, synced_at, short_ref, sealed_card) = values
    return TxnRow(
        seq, id_, terminal_id, parse_utc(created_at), date.fromisoformat(business_date), kind,
        Money(amount, currency(cur)), method, scheme, card_token, masked_pan, decision, tuple(json.loads(reasons)),
        auth_mode, reference, operator, sealed_card, json.loads(details), _hex(prev_hash), _hex(row_hash),
        _hex(signature) if signature is not None else None,
        sync_state, sync_attempts, sync_error, sync_reason, parse_utc(synced_at) if synced_at else None, short_ref,
        _hex(sealed_sha) if sealed_sha is not None else None,
    )


def stored_hash(values: Sequence[Any]) -> bytes:
    """The SHA-256 of the canonical record of a stored row (the first 20 columns of TXN_COLUMNS),
    computed from the stored text as it is: what `verify` and `sign_pending` compare with row_hash."""
    (seq, id_, terminal_id, created_at, business_date, kind, amount, cur, method, scheme,
     card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_sha,
     details, prev_hash) = values[:20]
    head, middle, tail = canonical_txn_parts(
        amount=amount, auth_mode=auth_mode, business_date=business_date, card_token=card_token,
        created_at=created_at, currency=cur, decision=decision, details_json=details, id=id_, kind=kind,
        masked_pan=masked_pan, method=method, operator=operator, reasons_json=reasons, reference=reference,
        scheme=scheme, sealed_card_sha256=None if sealed_sha is None else _hex(sealed_sha), terminal_id=terminal_id)
    return hashlib.sha256(f"{head}{json_str(_hex(prev_hash))}{middle}{seq}{tail}".encode()).digest()


_TEXT = (1, 2, 3, 4, 5, 7, 8, 12, 13, 14, 18)  # columns that are always text
_OPTIONAL_TEXT = (9, 10, 11, 15, 16, 28)  # text or NULL


def row_problem(values: Sequence[Any]) -> str | None:
    """What makes a stored row's values unusable as a record (wrong types or sizes), or None. Cheap:
    a value edited within its type shows in the row's hash instead."""
    if type(values[0]) is not int or type(values[6]) is not int:
        return "its sequence number or amount is not a whole number"
    if type(values[19]) is not bytes or len(values[19]) != 32 or type(values[20]) is not bytes \
            or len(values[20]) != 32:
        return "its hashes are not 32 bytes"
    if values[21] is not None and (type(values[21]) is not bytes or len(values[21]) != 64):
        return "its signature is not 64 bytes"
    if values[17] is not None and (type(values[17]) is not bytes or len(values[17]) != 32):
        return "its sealed card digest is not 32 bytes"
    for i in _TEXT:
        if type(values[i]) is not str:
            return "it cannot be read (a text field holds something else)"
    for i in _OPTIONAL_TEXT:
        if values[i] is not None and type(values[i]) is not str:
            return "it cannot be read (a text field holds something else)"
    if values[28] is not None and (values[17] is None or sealed_digest(values[28]) != values[17]):
        return "its sealed card data is not the data it was signed with: it was replaced"
    return None


# rows remembered as signed by this process until the next checkpoint (~250 bytes each)
SIGNED_HERE_MAX = 100_000


class Transactions:
    """Appends (through a session) and reads transaction rows."""

    def __init__(self, database: Database, keys: TerminalKeys, state: StateBook,
                 session: Callable[..., AbstractContextManager[Session]]) -> None:
        self._d = database
        self._keys = keys
        self._state = state
        self._session = session
        self.terminal_id = database.terminal_id

    def append(self, txn: NewTransaction, *, now: datetime, business_date: date,
               claim: CodeClaim | None = None) -> TxnRow:
        """Store one transaction in its own write session; returns after the commit is on disk."""
        with self._session(now=now) as session:
            return session.append(txn, now=now, business_date=business_date, claim=claim)

    # -- signing --------------------------------------------------------------------------------

    def sign_pending(self) -> int:
        """Sign the rows not signed yet, after checking that they chain up to the authenticated head
        (so a row edited before it was signed is never vouched for). Two passes over pages of
        SIGN_BATCH rows, so memory stays flat however many rows wait: first the whole unsigned run is
        checked against the head in one snapshot, then each page is signed in a short write session
        (a row whose hash changed in between is left unsigned, and the next pass finds it). Returns
        how many were signed."""
        with self._d.reader() as db:
            db.execute("BEGIN")  # one snapshot: the head and the rows it vouches for
            try:
                head = self._state.read_head(db)
                first = max(head.signed_seq, head.archived_seq) + 1
                if first > head.txn_seq:
                    return 0
                before = db.execute("SELECT row_hash FROM txn WHERE seq = ?", (first - 1,)).fetchone()
                prev = _hex(before[0]) if before else (head.archived_hash if first == head.archived_seq + 1 else None)
                if prev is None:
                    raise JournalIntegrityError(
                        f"transaction row {first - 1}, before the first unsigned row, is missing")
                expected = first
                while expected <= head.txn_seq:
                    page = db.execute(f"SELECT {TXN_COLUMNS} FROM txn WHERE seq >= ? AND seq <= ? ORDER BY seq "
                                      "LIMIT ?", (expected, head.txn_seq, SIGN_BATCH)).fetchall()
                    if not page:
                        break
                    for values in page:
                        problem = row_problem(values)
                        if problem is None and values[0] != expected:
                            problem = f"row {expected} is missing"
                        if problem is None and _hex(values[19]) != prev:
                            problem = "its previous-row hash does not match: rows were removed or reordered"
                        if problem is None and stored_hash(values) != values[20]:
                            problem = "its content does not match its hash: the row was edited"
                        if problem:
                            raise JournalIntegrityError(f"unsigned transaction row {expected}: {problem}")
                        prev = _hex(values[20])
                        expected += 1
                if prev != head.txn_hash or expected != head.txn_seq + 1:
                    raise JournalIntegrityError("the unsigned rows do not end at the head the journal vouches for")
            finally:
                db.execute("COMMIT")
        signed, after = 0, first - 1
        while after < head.txn_seq:
            with self._d.reader() as db:
                page = db.execute("SELECT seq, row_hash FROM txn WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                                  (after, head.txn_seq, SIGN_BATCH)).fetchall()
            if not page:
                break
            updates = [(self._keys.sign(row_hash), seq, row_hash) for seq, row_hash in page]
            try:
                with self._session() as session:
                    done = session.db.executemany("UPDATE txn SET signature = ? WHERE seq = ? AND row_hash = ?",
                                                  updates).rowcount
                    if done != len(updates):
                        return signed  # a row changed since the check: left unsigned for the next pass
                    if session.head.signed_seq < page[-1][0]:
                        session.update_head(signed_seq=page[-1][0])
            except sqlite3.Error as exc:
                raise self._d.fail(exc, "sign transactions") from None
            signed += len(updates)
            after = page[-1][0]
            if len(self._d.signed_here) + len(updates) <= SIGNED_HERE_MAX:
                self._d.signed_here.update((seq, (row_hash, signature)) for signature, seq, row_hash in updates)
        return signed

    # -- reads ----------------------------------------------------------------------------------

    def rows(self, where: str = "", params: Sequence[Any] = (), *, order: str = "seq",
             limit: int | None = None) -> list[TxnRow]:
        sql = f"SELECT {TXN_COLUMNS} FROM txn {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [row_of(r) for r in self._d.read(sql, params)]

    def get(self, txn_id: str) -> TxnRow | None:
        rows = self.rows("WHERE id = ?", (txn_id,))
        return rows[0] if rows else None

    def by_short_ref(self, short_ref: str, business_date: date | None = None) -> list[TxnRow]:
        """Rows with this short reference (the newest days first), or the one of `business_date`."""
        ref = short_ref.strip().lstrip("#").zfill(4)
        if business_date is not None:
            return self.rows("WHERE short_ref = ? AND business_date = ?", (ref, business_date.isoformat()))
        return self.rows("WHERE short_ref = ?", (ref,), order="seq DESC", limit=20)

    def find(self, text: str) -> list[TxnRow]:
        """Rows whose id starts or ends with `text` (at least 6 characters: a shortened reference)."""
        text = text.strip().lower()
        if len(text) < 6 or not all(c in "0123456789abcdef-" for c in text):
            return []
        found = self.rows("WHERE id >= ? AND id < ?", (text, text + "\uffff"), order="seq DESC", limit=20)
        if len(text) <= 12:  # the random end of the id (what lists show as a short reference: its last 8)
            if len(text) >= 8:  # by the index of the ids' last eight characters
                tail = self.rows("WHERE substr(id, -8) = ?", (text[-8:],), order="seq DESC", limit=20)
            else:  # shorter: among the newest rows only (bounded work at any journal size)
                newest = self._d.read("SELECT COALESCE(MAX(seq), 0) FROM txn")[0][0]
                tail = self.rows("WHERE seq > ? AND id LIKE ?", (newest - SEARCH_WINDOW, "%" + text),
                                 order="seq DESC", limit=20)
            found += [r for r in tail if r.id.endswith(text) and r not in found]
        return found

    def recent(self, limit: int = 50, *, search: str | None = None) -> list[TxnRow]:
        """Newest first. `search`: the last four card digits, a reference (the start or the end of a
        transaction id), or a word (scheme, method, kind, result) among the newest SEARCH_WINDOW rows."""
        text = (search or "").strip().lower()
        if not text:
            return self.rows(order="seq DESC", limit=limit)
        if len(text) == 4 and text.isdigit():  # a short reference or the last four card digits, newest first
            # two index walks newest first, each stopping at `limit` (one OR query would sort every match)
            found = self.rows("WHERE short_ref = ?", (text,), order="seq DESC", limit=limit)
            found += self.rows("WHERE substr(masked_pan, -4) = ? AND masked_pan IS NOT NULL", (text,),
                               order="seq DESC", limit=limit)
            unique = {row.seq: row for row in found}
            return [unique[seq] for seq in sorted(unique, reverse=True)[:limit]]
        if text.isdigit() and len(text) <= 6:  # a short reference of a busy day (5 or 6 digits)
            return self.rows("WHERE short_ref = ?", (text.zfill(4),), order="seq DESC", limit=limit)
        if len(text) >= 6 and all(c in "0123456789abcdef-" for c in text):
            return self.find(text)[:limit]
        newest = self._d.read("SELECT COALESCE(MAX(seq), 0) FROM txn")[0][0]
        return self.rows("WHERE seq > ? AND (scheme = ? OR method = ? OR kind = ? OR decision = ? OR sync_state = ?)",
                         (newest - SEARCH_WINDOW, text, text, text, text, text), order="seq DESC", limit=limit)

    def rows_since(self, since: datetime | None = None) -> Iterator[TxnRow]:
        """All rows in sequence order (created at or after `since`), fetched in pages."""
        after = 0
        if since is not None:  # the first row at or after `since`, by the time index
            first = self._d.read("SELECT MIN(seq) FROM txn WHERE created_at >= ?", (utc_text(since),))[0][0]
            if first is None:
                return
            after = first - 1
        yield from self.rows_after(after)

    def rows_after(self, seq: int, *, until: int | None = None) -> Iterator[TxnRow]:
        """All rows with a sequence number above `seq` (up to `until`), in order, fetched in pages."""
        after = seq
        while True:
            if until is not None:
                page = self.rows("WHERE seq > ? AND seq <= ?", (after, until), limit=1000)
            else:
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

    def newest(self) -> TxnRow | None:
        rows = self.rows(order="seq DESC", limit=1)
        return rows[0] if rows else None

    def related(self, original_id: str) -> list[TxnRow]:
        """Refunds and voids that reference a sale."""
        return self.rows("WHERE reference = ? AND kind IN ('refund', 'void')", (original_id,))

    def count_for_day(self, business_date: date) -> int:
        return int(self._d.read("SELECT COUNT(*) FROM txn WHERE business_date = ?",
                                (business_date.isoformat(),))[0][0])

    def batch_totals(self, after: int, until: int | None = None, shift_ends: Sequence[int] = ()) -> BatchTotals:
        """The rows with a sequence number above `after` (up to `until`, else the newest), counted by
        SQL for the X/Z reports (`terminal.core.reports.report_of_totals`): groups of rows alike in
        everything a report tells apart (operator, shift, kind, method, scheme, decision, auth mode,
        sync state) with their count, amount and first and last sequence number; the tax of the
        approved rows per rate from their details (refunds and voids taken off); the first and the
        last row. One read snapshot, a range of the primary key: nothing per row reaches Python."""
        ends = [int(e) for e in shift_ends]
        shift = " + ".join("(seq > ?)" for _ in ends) or "0"  # the shift index: shift ends before the row
        try:
            with self._d.reader() as db:
                db.execute("BEGIN")  # one snapshot: the groups, the tax and the bounds agree
                try:
                    if until is None:
                        until = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM txn").fetchone()[0])
                    span = (after, until)
                    groups = tuple(RowGroup(*values) for values in db.execute(
                        f"SELECT operator, {shift} AS shift, kind, method, scheme, decision, auth_mode, sync_state, "
                        "COUNT(*), SUM(amount), MIN(seq), MAX(seq) FROM txn WHERE seq > ? AND seq <= ? "
                        "GROUP BY operator, shift, kind, method, scheme, decision, auth_mode, sync_state",
                        (*ends, *span)))
                    # the tax lines {"rate", "gross", "tax"} (whole numbers) of details["tax"], a list
                    taxes = tuple(db.execute(
                        "SELECT json_extract(t.value, '$.rate') AS rate, SUM(sign * json_extract(t.value, '$.gross')), "
                        "SUM(sign * json_extract(t.value, '$.tax')) FROM "
                        "(SELECT details, CASE WHEN kind IN ('refund', 'void') THEN -1 ELSE 1 END AS sign FROM txn "
                        " WHERE seq > ? AND seq <= ? AND decision = 'approved' AND instr(details, '\"tax\"') > 0 "
                        " AND json_type(details, '$.tax') = 'array') AS r, json_each(r.details, '$.tax') AS t "
                        "WHERE t.type = 'object' AND json_type(t.value, '$.rate') = 'integer' "
                        "AND json_type(t.value, '$.gross') = 'integer' AND json_type(t.value, '$.tax') = 'integer' "
                        "GROUP BY rate", span))
                    bounds = [db.execute(f"SELECT seq, business_date, created_at FROM txn WHERE seq > ? AND seq <= ? "
                                         f"ORDER BY seq {order} LIMIT 1", span).fetchone() for order in ("", "DESC")]
                finally:
                    db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._d.fail(exc, "count the day's transactions") from None
        first, last = (RowMark(b[0], date.fromisoformat(b[1]), parse_utc(b[2])) if b else None for b in bounds)
        return BatchTotals(groups, taxes, first, last)
