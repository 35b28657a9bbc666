#!/usr/bin/env python3
"""Benchmark: what a payment, a status refresh, a report, a search and a verification cost as the
journal grows and the unsent queue backs up.

For each size (default 2,000 and 200,000 rows; `--max 1000000` adds a third) a fresh data directory
is built in a child process, through the journal's real append API (`Journal.session()` and
`Session.append`: hash chain, authenticated head, per-card day totals; committed a thousand rows a
session to build fast), with gate-like data: 2,000 taps a business day, 15,000 cards, sealed card
data on every row; the backend's answers are recorded through the real sync bookkeeping (so the
sealed data of accepted rows is dropped) and every row is signed and checkpointed. The terminal is
then started with `terminal.bootstrap` (backend off, retention off so nothing leaves during the
run) and timed:

- pay_p99: `Service.pay` (decide and append, durable on return), 400 payments, p99 (housekeeping,
  which a terminal runs every few seconds, runs between the timed loops);
- pay_p99_during_status_refresh: the same while another thread refreshes the status bar without pause;
- status_refresh: what the TUI's status bar reads every second (`terminal.tui.app.collect_status`);
- x_report_daily / z_report_daily: the X report, then the Z close, of a business day (the day
  before was closed by Z, as every day is);
- search: the transaction list's search by four digits (card digits and short references, newest
  first) for a card seen once: the same answer at every size, so the figure is the cost of the index
  walks and not the length of the answer (`search_page_ms`, not compared: a reference every day has,
  a page of 50 rows at the large size);
- find: a refund's look-up of a sale by the end of its reference;
- verify_incremental: housekeeping after 100 new payments (sign them, walk them from the last
  checkpoint, sign a new checkpoint);
- status_cli: `walletpos status --json` as a process (wall time, start-up included);
- export_24h: `walletpos journal export --since 24h` as the service streams it (every row of the last day);
- pay_p50_with_backlog: `Service.pay` p50 after a quarter as many rows again were added unsent
  (the backend unreachable: 500 and 50,000 rows at the default sizes);
- also, not compared: bytes per transaction on disk (and per unsent one, its sealed data kept), the
  full hash-chain verify (rows/s), an archive run of 20,000 rows, X/Z of a 20,000-row day, and the
  child's peak RSS.

Each operation's median at each size and `growth_ratio` = largest / smallest (target <= 2 across
100x growth); peak RSS target <= 150 MB at the largest size.

Usage: scripts/bench_scale.py [--sizes 2000,200000] [--max N] [--dir DIR]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import benchkit  # noqa: E402

ROWS_PER_DAY = 2000
LAST4 = 9000  # the cards' last four digits are 0000-8999: 9000-9999 belong to the search probe's card
PROBE_LAST4 = "9731"  # neither a card's last four digits nor a short reference (no day has 9,731 rows)
CARDS = 15_000
BUILD_BATCH = 1000
TARGET_GROWTH = 2.0
TARGET_RSS_MB = 150
CONFIG = """
[terminal]
id = "SCALE001"
[backend]
enabled = false
[journal]
keep_days = 3650
[offline]
exposure_cap = "99999999.00"
card_daily_count = 1000
card_daily_amount = "99999.00"
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def build(journal, rows: int, start: datetime, zone, *, sealed: bool = True, accepted: bool = True,
          rng: random.Random, first_index: int = 0) -> datetime:
    """Append `rows` gate taps through the journal's sessions (the real append path), 2,000 per day;
    record the backend's acceptance when `accepted`. Returns the time of the last row."""
    from terminal.core.money import Money, currency
    from terminal.journal import NewTransaction

    cny = currency("CNY")
    step = timedelta(seconds=86400 / ROWS_PER_DAY)
    ids: list[str] = []
    moment = start
    for first in range(0, rows, BUILD_BATCH):
        with journal.session(now=moment) as session:
            for i in range(first, min(rows, first + BUILD_BATCH)):
                moment = start + step * i
                card = rng.randrange(CARDS)
                blob = base64.b64encode(rng.randbytes(366)).decode() if sealed else None  # 488 characters
                row = session.append(NewTransaction(
                    kind="fare", amount=Money(200 + (first_index + i) % 300, cny), method="card", decision="approved",
                    reasons=("below_floor_limit",), auth_mode="offline", scheme="unionpay", card_token=f"tok{card:06d}",
                    masked_pan=f"622202******{card % LAST4:04d}", sealed_card=blob,
                    details={"gate": "G01", "station": "S017"}), now=moment,
                    business_date=moment.astimezone(zone).date())
                ids.append(row.id)
        if accepted and len(ids) >= 5000:
            journal.sync.set_sync_results([(i, "accepted", None) for i in ids], now=moment)
            ids = []
    if accepted and ids:
        journal.sync.set_sync_results([(i, "accepted", None) for i in ids], now=moment)
    if accepted:
        journal.sync.record_success(moment)
    return moment


def one_size(rows: int, directory: Path) -> dict[str, Any]:
    """Build a journal of `rows` rows in `directory` and time every operation (run in a child)."""
    from terminal.bootstrap import bootstrap
    from terminal.config import load_config
    from terminal.core.money import Money
    from terminal.core.rules import Method, PaymentRequest
    from terminal.journal import Journal
    from terminal.payment import CardFacts
    from terminal.security import load_or_create_keys
    from terminal.tui.app import collect_status

    rng = random.Random(rows)
    data = directory / "data"
    config_path = directory / "scale.toml"
    config_path.write_text(CONFIG, encoding="utf-8")
    config = load_config(config_path)
    zone = config.terminal.zone
    days = max(1, rows // ROWS_PER_DAY)
    start = (datetime.now(UTC) - timedelta(days=days)).replace(microsecond=0)
    out: dict[str, Any] = {"rows": rows}

    # -- the journal: all days but the last, a Z close, then the last day ------------------------
    t0 = time.perf_counter()
    data.mkdir(mode=0o700, parents=True)
    keys = load_or_create_keys(data)
    journal = Journal(data / "journal.sqlite3", keys, config.terminal.id, now=start)
    last_day = min(rows, ROWS_PER_DAY)
    moment = build(journal, rows - last_day, start, zone, rng=rng) if rows > last_day else start
    journal.housekeeping(moment)
    journal.close()
    clock = Clock(moment + timedelta(seconds=1))
    with bootstrap(config_path=config_path, data_dir=data, clock=clock, env={}, configure_logging=False) as svc:
        # the supervisor who closes each day (signed in: no PIN asked)
        svc.operators.add("sup1", "Night supervisor", "supervisor", "2468", now=clock.now)
        if rows > last_day:
            svc.close_day(operator="sup1")  # yesterday's Z, as every day has one
        journal = svc.require_journal()
        moment = build(journal, last_day, moment + timedelta(seconds=43), zone, rng=rng, first_index=rows - last_day)
        clock.now = moment + timedelta(seconds=1)
        t_sign = time.perf_counter()
        svc.housekeeping()
        out["build_s"] = round(time.perf_counter() - t0, 1)
        out["first_sign_and_checkpoint_s"] = round(time.perf_counter() - t_sign, 2)

        currency = svc.currency

        def pay() -> None:
            card = rng.randrange(CARDS)
            token = f"tok{card:06d}"
            clock.now += timedelta(milliseconds=50)
            svc.pay(PaymentRequest(Money(300, currency), Method.CARD, card_token=token),
                    CardFacts(scheme="unionpay", card_token=token, masked_pan=f"622202******{card % LAST4:04d}"))

        timed(pay, 20)  # warm-up
        svc.housekeeping()  # as the terminal does every few seconds (and between the timed loops here)
        pays = timed(pay, 400)
        svc.housekeeping()
        out["pay_p50_ms"] = ms(statistics.median(pays))
        out["pay_p99_ms"] = ms(benchkit.percentile(pays, 0.99))

        refreshes: list[float] = []
        stop = threading.Event()

        def refresher() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                collect_status(svc)
                refreshes.append(time.perf_counter() - t)

        worker = threading.Thread(target=refresher, daemon=True)
        worker.start()
        during = timed(pay, 400)
        stop.set()
        worker.join()
        out["pay_p99_during_status_refresh_ms"] = ms(benchkit.percentile(during, 0.99))
        out["status_refresh_ms"] = ms(statistics.median(timed(lambda: collect_status(svc), 200)))
        out["status_refreshes_during_payments"] = len(refreshes)

        out["x_report_daily_ms"] = ms(statistics.median(timed(svc.day_report, 5)))
        report = svc.day_report()
        out["x_report_rows"] = (report.last_seq or 0) - (report.first_seq or 0) + 1 if report.first_seq else 0

        journal = svc.require_journal()
        newest = journal.txns.newest()
        assert newest is not None
        # the list's search, per keystroke: the same answer at every size (a card seen once), so the
        # figure is the cost of the index walks, not the length of the answer (both walks, short
        # reference and card digits, run for four digits)
        clock.now += timedelta(milliseconds=50)
        probe = svc.pay(PaymentRequest(Money(300, currency), Method.CARD, card_token="tokprobe"),
                        CardFacts(scheme="unionpay", card_token="tokprobe", masked_pan=f"622202******{PROBE_LAST4}"))
        assert [r.id for r in svc.recent_transactions(50, search=PROBE_LAST4)] == [probe.row.id]
        out["search_ms"] = ms(statistics.median(timed(lambda: svc.recent_transactions(50, search=PROBE_LAST4), 40)))
        # not compared: a short reference every day has, a page of 50 rows (its cost is the page's)
        page = svc.recent_transactions(50, search="0001")
        out["search_page_ms"] = ms(statistics.median(timed(lambda: svc.recent_transactions(50, search="0001"), 20)))
        out["search_page_rows"] = len(page)
        out["find_ms"] = ms(statistics.median(timed(lambda: svc.find_original(newest.id[-8:]), 40)))

        def incremental() -> None:
            for _ in range(100):
                pay()
            t = time.perf_counter()
            svc.housekeeping()
            incremental_times.append(time.perf_counter() - t)

        incremental_times: list[float] = []
        for _ in range(5):
            incremental()
        out["verify_incremental_ms"] = ms(statistics.median(incremental_times))

        since = clock.now - timedelta(hours=24)
        exported: list[int] = []

        def export() -> None:
            exported.append(sum(1 for _ in svc.export_journal(since)))

        out["export_24h_ms"] = ms(statistics.median(timed(export, 3)))
        out["export_24h_rows"] = exported[-1]

        env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETPOS_")}
        env.update(WALLETPOS_DATA_DIR=str(data), WALLETPOS_CONFIG=str(config_path), PYTHONPATH=str(ROOT))
        cli = [sys.executable, "-m", "terminal.cli", "status", "--json"]

        def status_cli() -> None:
            subprocess.run(cli, env=env, check=True, capture_output=True, timeout=120)

        out["status_cli_ms"] = ms(statistics.median(timed(status_cli, 3)))

        out["z_report_daily_ms"] = ms(timed(lambda: svc.close_day(operator="sup1"), 1)[0])

        t = time.perf_counter()
        full = svc.verify_journal()
        out["verify_full_s"] = round(time.perf_counter() - t, 3)
        out["verify_full_ok"] = full.ok
        out["verify_full_rows_per_s"] = round(full.rows_checked / max(1e-9, time.perf_counter() - t))

        with journal.db.lock:
            journal.db.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = sum(p.stat().st_size for p in data.glob("journal.sqlite3*"))
        count = journal.head().counts()["total"]
        out["bytes_per_txn"] = round(size / count)
        out["journal_bytes"] = size

        def used_bytes() -> int:  # the pages in use (free pages of dropped sealed data are reused first)
            page_size, pages, free = (journal.db.read(f"PRAGMA {name}")[0][0]
                                      for name in ("page_size", "page_count", "freelist_count"))
            return int(page_size * (pages - free))

        backlog = max(500, rows // 4)
        used_before, pending_before = used_bytes(), journal.head().pending
        clock.now = build(journal, backlog, clock.now + timedelta(seconds=1), zone, rng=rng, accepted=False,
                          first_index=rows) + timedelta(seconds=1)
        svc.housekeeping()
        out["backlog_rows"] = journal.head().pending
        with journal.db.lock:
            journal.db.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # an unsent row keeps its sealed card data until the backend accepts it
        out["bytes_per_unsent_txn"] = round((used_bytes() - used_before) / (out["backlog_rows"] - pending_before))
        backlog_pays = timed(pay, 300)
        out["pay_p50_with_backlog_ms"] = ms(statistics.median(backlog_pays))

        if rows >= 50_000:  # a 20,000-row day, and a retention run (both once, at the large sizes)
            svc.close_day(operator="sup1")  # the backlog's day closed: the next batch is the 20,000-row day
            clock.now = build(journal, 20_000 - 0, clock.now + timedelta(days=1), zone, rng=rng,
                              first_index=rows * 2) + timedelta(seconds=1)
            svc.housekeeping()
            out["x_report_20k_day_ms"] = ms(statistics.median(timed(svc.day_report, 3)))
            out["x_report_20k_day_rows"] = svc.day_report().sales.count
            out["z_report_20k_day_ms"] = ms(timed(lambda: svc.close_day(operator="sup1"), 1)[0])
            # the unsent backlog was accepted meanwhile, in the sync worker's batches (a batch of rows in
            # memory at a time, as the real upload holds); keep ten days (this bench's days are 2,000 rows)
            while pending := [r.id for r in journal.sync.pending(limit=config.sync.batch_size)]:
                journal.sync.set_sync_results([(i, "accepted", None) for i in pending], now=clock.now)
            t = time.perf_counter()
            result = journal.archive(keep_days=10, today=clock.now.astimezone(zone).date(), now=clock.now,
                                     max_rows=20_000)
            out["archive_run_s"] = round(time.perf_counter() - t, 3)
            out["archive_run"] = result.to_dict()
            out["verify_after_archive_ok"] = svc.verify_journal().ok
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


OPERATIONS = ("pay_p99", "pay_p99_during_status_refresh", "pay_p50_with_backlog", "status_refresh", "x_report_daily",
              "z_report_daily", "search", "find", "verify_incremental", "status_cli", "export_24h")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,200000", help="journal sizes in rows (default 2000,200000)")
    ap.add_argument("--max", type=int, default=None, help="add this size too (e.g. 1000000)")
    ap.add_argument("--dir", type=Path, default=None, help="directory on the disk to measure (default: a temp dir)")
    ap.add_argument("--one-size", type=int, default=None, help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args()
    if args.one_size is not None:
        print(json.dumps(one_size(args.one_size, args.dir)))
        return
    sizes = sorted({int(s) for s in args.sizes.split(",")} | ({args.max} if args.max else set()))
    results = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="walletpos-scale-") as tmp:
            child = subprocess.run([sys.executable, __file__, "--one-size", str(rows), "--dir", tmp],
                                   capture_output=True, text=True, timeout=3600)
            if child.returncode != 0:
                sys.exit(f"size {rows} failed:\n{child.stderr[-4000:]}")
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    small, large = results[0], results[-1]
    operations = {}
    for name in OPERATIONS:
        key = f"{name}_ms"
        per_size = {str(r["rows"]): r[key] for r in results}
        operations[name] = {"ms": per_size,
                            "growth_ratio": round(large[key] / small[key], 2) if small[key] else None}
    worst = max(v["growth_ratio"] or 0 for v in operations.values())
    result = {
        "benchmark": "scale",
        "sizes": sizes,
        "growth": f"{large['rows'] // small['rows']}x",
        "operations": operations,
        "worst_growth_ratio": worst,
        "bytes_per_txn": {str(r["rows"]): r["bytes_per_txn"] for r in results},
        "bytes_per_unsent_txn": {str(r["rows"]): r["bytes_per_unsent_txn"] for r in results},
        "peak_rss_mb": {str(r["rows"]): r["peak_rss_mb"] for r in results},
        "per_size": results,
        "targets": {"growth_ratio": TARGET_GROWTH, "peak_rss_mb_at_largest": TARGET_RSS_MB},
        "machine": benchkit.machine(directory=str(args.dir or tempfile.gettempdir())),
    }
    result["targets_met"] = worst <= TARGET_GROWTH and large["peak_rss_mb"] <= TARGET_RSS_MB
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
