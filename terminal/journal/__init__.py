"""The journal: a SQLite file that keeps every transaction, the deny list and an audit log.

A few small repositories over one connection (`terminal.journal.db.Database`), one per aggregate:

- `txns` (`Transactions`): signed, hash-chained transaction rows; `append` returns only after the
  commit is on disk;
- `sync` (`SyncBook`): which rows the backend has and what it answered (unsigned bookkeeping
  next to the signed columns: it changes after the row is written);
- `operators`, `issuer_keys` (and used wallet codes), `merchant_codes`, `deny` (the deny list);
- `audit` (`AuditLog`): its own signed chain;
- `chain` (`Chain`): the signed seal of both heads and `verify`.

The signed record itself (canonical bytes, hash, the row types) is the pure `terminal.journal.record`,
which the sandbox backend uses to check what terminals send. No clear card number is ever given to
this package: it stores the card token and the masked PAN.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from terminal.errors import StorageError
from terminal.journal.audit import AuditLog
from terminal.journal.chain import Chain
from terminal.journal.db import SCHEMA, SCHEMA_VERSION, Database
from terminal.journal.deny import DenyList
from terminal.journal.ids import new_txn_id
from terminal.journal.issuer_keys import IssuerKeys
from terminal.journal.merchant_codes import MerchantCodes
from terminal.journal.operators import OperatorStore
from terminal.journal.record import (
    AUDIT_SIGNED_FIELDS,
    GENESIS_HASH,
    SIGNED_FIELDS,
    SYNC_STATES,
    CodeClaim,
    NewTransaction,
    PayerTotals,
    TxnRow,
    VerifyReport,
    canonical_bytes,
    canonical_txn_parts,
    parse_utc,
    record_hash,
    utc_text,
)
from terminal.journal.syncbook import SyncBook
from terminal.journal.txns import SEAL_EVERY, Transactions
from terminal.security import TerminalKeys

log = logging.getLogger("walletpos.journal")


class Journal:
    """The journal file and its repositories; safe to share between threads of one process."""

    def __init__(self, path: Path, keys: TerminalKeys, terminal_id: str, *, now: datetime | None = None):
        self.db = Database(path, terminal_id=terminal_id, public_key_hex=keys.public_key_bytes.hex(), now=now)
        self.path = self.db.path
        self.terminal_id = terminal_id
        self.chain = Chain(self.db, keys)
        self.txns = Transactions(self.db, keys, self.chain.seal)
        self.sync = SyncBook(self.db, self.txns)
        self.operators = OperatorStore(self.db)
        self.issuer_keys = IssuerKeys(self.db)
        self.merchant_codes = MerchantCodes(self.db)
        self.deny = DenyList(self.db)
        self.audit = AuditLog(self.db, keys, self.chain.seal)

    def meta(self, key: str) -> str | None:
        return self.db.meta(key)

    def set_meta(self, values: Mapping[str, str]) -> None:
        self.db.set_meta(values)

    @property
    def installed_at(self) -> datetime:
        value = self.db.meta("installed_at")
        assert value is not None
        return parse_utc(value)

    def close(self) -> None:
        with self.db.lock:
            if self.db.closed:
                return
            try:
                self.chain.seal_head()
            except StorageError as exc:  # read-only or full disk: nothing new can have been written
                log.warning("journal not sealed on close: %s", exc)
            self.db.close()


__all__ = [
    "AUDIT_SIGNED_FIELDS", "GENESIS_HASH", "SCHEMA", "SCHEMA_VERSION", "SEAL_EVERY", "SIGNED_FIELDS", "SYNC_STATES",
    "CodeClaim", "Journal", "NewTransaction", "PayerTotals", "TxnRow", "VerifyReport", "canonical_bytes",
    "canonical_txn_parts", "new_txn_id", "parse_utc", "record_hash", "utc_text",
]
