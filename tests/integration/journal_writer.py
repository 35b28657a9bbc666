"""A writer process for the crash test: appends transactions through the journal API and prints
each id only after `append` has returned (i.e. after the commit is durable)."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path

from terminal.core.money import Money, currency
from terminal.journal import Journal, NewTransaction
from terminal.security import load_or_create_keys


def main() -> None:
    data_dir, run = Path(sys.argv[1]), sys.argv[2]
    keys = load_or_create_keys(data_dir)
    journal = Journal(data_dir / "journal.sqlite3", keys, "CRASH001")
    cny = currency("CNY")
    i = 0
    while True:
        i += 1
        row = journal.txns.append(
            NewTransaction(kind="sale", amount=Money(100 + i, cny), method="card", decision="approved",
                           reasons=("below_floor_limit",), auth_mode="offline", card_token=f"tok{i % 7}",
                           masked_pan="622202******1234", id=f"{run}-{i}", details={"i": i}),
            now=datetime.now(UTC), business_date=date(2026, 11, 23),
        )
        sys.stdout.write(f"{row.id} {row.seq}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
