#!/usr/bin/env python3
"""Benchmark: durable journal appends vs raw SQLite, and pure rule decisions.

Prints one JSON object:
- journal_appends_per_s: `Journal.append` (hash chain, the authenticated head and per-card totals
  read, checked and written in the same write transaction, WAL, synchronous=FULL, commit durable on
  return; the Ed25519 signature comes later, in housekeeping, off the payment's path);
- raw_sqlite_inserts_per_s: single-row INSERT + COMMIT of the same row into a table of the
  journal's shape (same columns and indexes), same pragmas, same directory (so the same disk), in
  the same run, interleaved with the journal blocks: the floor SQLite sets for storing that row;
- journal_to_raw_ratio (target >= 0.7): what the journal's own work (hash chain, signature, head
  bookkeeping, API) costs on top of that floor;
- raw_minimal_*: the same for a two-column row into a bare table, for reference;
- rule_decisions_per_s: `terminal.core.rules.decide` on a mix of requests (target >= 50,000/s);
- integrity_check_us: what a decision's integrity check costs, alone: reading the journal head and
  checking its MAC, and a card's day totals and their MAC, as when another process wrote last (when
  this process wrote last, the head comes from its cache after one data_version read).

Usage: scripts/bench_journal.py [--appends N] [--dir DIR] [--decisions N]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import benchkit

from terminal.config import load_config
from terminal.core.money import Money, currency
from terminal.core.rules import Method, PaymentRequest, RuleSet, TerminalState, WalletTier, decide
from terminal.journal import SCHEMA as JOURNAL_SCHEMA
from terminal.journal import Journal, NewTransaction, new_txn_id
from terminal.security import load_or_create_keys

CNY = currency("CNY")


def machine(directory: Path) -> dict:
    return benchkit.machine(sqlite=sqlite3.sqlite_version, directory=str(directory))


RAW_ROW = (
    "INSERT INTO txn (id, terminal_id, created_at, business_date, kind, amount, currency, method, scheme, "
    "card_token, masked_pan, decision, reasons, auth_mode, reference, operator, sealed_card_sha256, details, "
    "prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
MINIMAL_ROW = "INSERT INTO t (id, amount) VALUES (?, ?)"


def raw_block(db: sqlite3.Connection, n: int, start: int, *, minimal: bool = False) -> float:
    """Single-row INSERT + COMMIT: the same row into a table of the journal's shape (same columns
    and indexes; id, hash and signature of the journal's sizes, ids time-ordered UUIDs), or
    (minimal) a two-column row into a bare table. Rows are made before the clock starts, as
    `journal_block` makes its requests: only the storing is timed on both sides."""
    filler_hash = b"\xaa" * 32  # 32-byte hashes as the journal stores them (the signature comes later)
    if minimal:
        sql, rows = MINIMAL_ROW, [(new_txn_id(), 100 + i) for i in range(start, start + n)]
    else:
        sql = RAW_ROW
        rows = [(new_txn_id(), "BENCH001", "2026-11-23T02:00:00.000000Z", "2026-11-23", "sale", 100 + i, "CNY", "card",
                 None, "tok", "622202******1234", "approved", '["below_floor_limit"]', "offline", None, None, None,
                 "{}", filler_hash, filler_hash) for i in range(start, start + n)]
    t0 = time.perf_counter()
    for row in rows:
        db.execute("BEGIN IMMEDIATE")
        db.execute(sql, row)
        db.execute("COMMIT")
    return time.perf_counter() - t0


def journal_block(journal: Journal, n: int, start: int) -> float:
    """`Journal.append` of n sales (requests made before the clock starts); each returns durable."""
    now, day = datetime.now(UTC), date(2026, 11, 23)
    requests = [NewTransaction(kind="sale", amount=Money(100 + i, CNY), method="card", decision="approved",
                               reasons=("below_floor_limit",), auth_mode="offline", card_token="tok",
                               masked_pan="622202******1234") for i in range(start, start + n)]
    append = journal.txns.append
    t0 = time.perf_counter()
    for request in requests:
        append(request, now=now, business_date=day)
    return time.perf_counter() - t0


def breakdown(keys, n: int = 2000) -> dict[str, float]:
    """What the journal does per append besides SQLite, measured alone (microseconds)."""
    import hashlib

    from terminal.journal import canonical_txn_parts

    t0 = time.perf_counter()
    for i in range(n):
        head, middle, tail = canonical_txn_parts(
            amount=100 + i, auth_mode="offline", business_date="2026-11-23", card_token="tok",
            created_at="2026-11-23T02:00:00.000000Z", currency="CNY", decision="approved", details_json="{}",
            id=f"01a20700-0000-7000-8000-{i:012d}", kind="sale", masked_pan="622202******1234", method="card",
            operator=None, reasons_json='["below_floor_limit"]', reference=None, scheme=None, sealed_card_sha256=None,
            terminal_id="BENCH001")
        hashlib.sha256(f'{head}"{"0" * 64}"{middle}{i}{tail}'.encode()).digest()
    hashing = (time.perf_counter() - t0) / n * 1e6
    digest = b"\x01" * 32
    t0 = time.perf_counter()
    for _ in range(n):
        keys.sign(digest)
    signing = (time.perf_counter() - t0) / n * 1e6
    return {"canonical_json_and_sha256_us": round(hashing, 1), "ed25519_sign_us": round(signing, 1)}


def integrity_check(journal: Journal, keys, n: int = 5000) -> dict[str, float]:
    """Per-decision integrity work (microseconds), on the journal as the benchmark left it."""
    from terminal.journal.state import StateBook

    day = date(2026, 11, 23)
    with journal.db.reader() as db:
        t0 = time.perf_counter()
        for _ in range(n):
            StateBook(keys.state_mac_key).read_head(db)  # a fresh book: nothing cached, the MAC checked
        head_us = (time.perf_counter() - t0) / n * 1e6
        book = StateBook(keys.state_mac_key)
        t0 = time.perf_counter()
        for i in range(n):
            book.card_day(db, f"tok{i % 50}", day.isoformat())
        card_us = (time.perf_counter() - t0) / n * 1e6
    return {"head_read_and_mac_us": round(head_us, 1), "card_day_read_and_mac_us": round(card_us, 1),
            "per_decision_us": round(head_us + card_us, 1)}


def bench_rules(n: int) -> float:
    rules = RuleSet.from_config(load_config(env={}))
    now = datetime(2026, 11, 23, 2, tzinfo=UTC)
    state = TerminalState(now=now, business_date=now.date(), card_offline_amount_today=Money(3000, CNY),
                          card_offline_count_today=2, card_amount_today=Money(5000, CNY),
                          unsynced_exposure=Money(100000, CNY), last_sync_at=now - timedelta(hours=2),
                          deny_listed=False, backend_reachable=True)
    requests = [
        PaymentRequest(Money(amount, CNY), method, card_token="tok", wallet_tier=tier,
                       expiry=date(2028, 12, 31))
        for amount, method, tier in [(500, Method.CARD, None), (25000, Method.CARD, None),
                                     (150000, Method.CARD, None), (900, Method.WALLET_SIGNED, WalletTier.UNVERIFIED),
                                     (2000, Method.WALLET_NUMERIC, None), (60000, Method.QR_CPM, None)]
    ]
    t0 = time.perf_counter()
    for i in range(n):
        decide(requests[i % len(requests)], state, rules)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--appends", type=int, default=4800, help="appends per side (default 4800)")
    ap.add_argument("--dir", type=Path, default=None, help="directory on the disk to measure (default: a temp dir)")
    ap.add_argument("--decisions", type=int, default=200_000)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="walletpos-bench-") as tmp:
        base = Path(tmp)
        keys = load_or_create_keys(base / "data")
        journal = Journal(base / "data" / "journal.sqlite3", keys, "BENCH001")
        raw = sqlite3.connect(str(base / "raw.sqlite3"), isolation_level=None)
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("PRAGMA synchronous = FULL")
        raw.executescript(JOURNAL_SCHEMA)  # the journal's own tables and indexes
        raw.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, amount INTEGER NOT NULL)")
        # warm up all three (page cache, WAL creation), then interleave blocks so drift hits every side
        raw_block(raw, 50, -50)
        raw_block(raw, 50, -50, minimal=True)
        journal_block(journal, 50, -50)
        blocks = 24
        per = max(1, args.appends // blocks)
        raw_time = minimal_time = journal_time = 0.0
        pair_ratios = []
        for b in range(blocks):
            r = raw_block(raw, per, b * per)
            j = journal_block(journal, per, b * per)
            raw_time += r
            journal_time += j
            pair_ratios.append(r / j)
            minimal_time += raw_block(raw, per, b * per, minimal=True)
        raw.close()
        journal.close()  # stores the last signatures and seals the head
        journal = Journal(base / "data" / "journal.sqlite3", keys, "BENCH001")
        report = journal.verify()
        integrity = integrity_check(journal, keys)
        journal.close()
        work = breakdown(keys)
        directory = base

    total = per * blocks
    raw_rate = total / raw_time
    minimal_rate = total / minimal_time
    journal_rate = total / journal_time
    result = {
        "benchmark": "journal",
        "appends": total,
        "journal_appends_per_s": round(journal_rate, 1),
        "raw_sqlite_inserts_per_s": round(raw_rate, 1),
        "raw_row": "the same row into a table of the journal's shape (columns, indexes), no hashing or signing",
        "journal_to_raw_ratio": round(journal_rate / raw_rate, 3),
        "journal_to_raw_ratio_median_of_pairs": round(statistics.median(pair_ratios), 3),
        "blocks": f"{blocks} interleaved pairs of {per} appends each",
        "raw_minimal_inserts_per_s": round(minimal_rate, 1),
        "journal_to_raw_minimal_ratio": round(journal_rate / minimal_rate, 3),
        "journal_ms_per_append": round(1000 * journal_time / total, 3),
        "raw_ms_per_insert": round(1000 * raw_time / total, 3),
        "raw_minimal_ms_per_insert": round(1000 * minimal_time / total, 3),
        "journal_verified": report.ok and report.rows_checked == total + 50,
        "rule_decisions_per_s": round(bench_rules(args.decisions)),
        "per_append_work_outside_sqlite": work,
        "integrity_check_us": integrity,
        "targets": {"journal_to_raw_ratio": 0.7, "rule_decisions_per_s": 50000},
        "machine": machine(directory.parent),
    }
    result["targets_met"] = (result["journal_to_raw_ratio_median_of_pairs"] >= 0.7
                             and result["rule_decisions_per_s"] >= 50000 and result["journal_verified"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
