"""The sandbox backend's state: one SQLite file (WAL), one connection behind a lock, and a small
repository per aggregate over it:

- `terminals`: enrolment tokens, enrolled terminals and their keys, request nonces, heartbeats;
- `transactions`: the journal rows each terminal uploaded, checked row by row;
- `payments`: online authorisations and the terminals' merchant QR codes;
- `risk`: the deny list and its change log, wallets out of funds, the limits set for terminals;
- `keys`: the sealing key and the issuer keys;
- `support`: support's requests for a terminal's support bundle, and the bundles terminals sent.
"""

from __future__ import annotations

from pathlib import Path

from .database import Database
from .keys import Keys
from .payments import Payments
from .risk import LIMIT_NAMES, Risk
from .support import Support
from .terminals import Terminals
from .transactions import ItemResult, Transactions
from .transit import Transit

__all__ = ["LIMIT_NAMES", "Database", "ItemResult", "Store"]

_WIPED_ON_RESET = ("terminals", "enrolment_tokens", "nonces", "transactions", "authorisations", "deny_list",
                   "cpm_counters", "out_of_funds", "payments", "issuer_keys", "heartbeats", "support_requests",
                   "support_bundles", "transit_taps", "card_pins")


class Store:
    def __init__(self, path: Path | str, *, clock_offset_s: float = 0.0):
        self.db = Database(path, clock_offset_s=clock_offset_s)
        self.path = str(self.db.path)
        self.keys = Keys(self.db)
        self.terminals = Terminals(self.db)
        self.risk = Risk(self.db)
        self.support = Support(self.db)
        self.transit = Transit(self.db)
        self.transactions = Transactions(self.db, risk=self.risk, transit=self.transit)
        self.payments = Payments(self.db, self.keys)

    @property
    def clock_offset_s(self) -> float:
        return self.db.clock_offset_s

    @clock_offset_s.setter
    def clock_offset_s(self, value: float) -> None:
        self.db.clock_offset_s = value

    def now_text(self) -> str:
        return self.db.now_text()

    def close(self) -> None:
        self.db.close()

    def reset(self) -> None:
        """Forget everything except the sealing key, as a backend restored from nothing would (tests
        reuse one sandbox)."""
        with self.db.transaction() as db:
            for table in _WIPED_ON_RESET:
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM meta WHERE key NOT IN ('sealing_private_key', 'sealing_key_id', 'ack_private_key')")
        # a backend that lost everything: deny-list versions start again from 1
        with self.db.transaction() as db:
            db.execute("DELETE FROM deny_changes")
            db.execute("DELETE FROM sqlite_sequence WHERE name = 'deny_changes'")
        self.terminals.forget_keys()
