#!/usr/bin/env python3
"""Benchmark: forward queued transactions to the sandbox backend over loopback.

Fills a fresh journal with N offline-approved sales and signs them as housekeeping does every few
seconds on a terminal (neither timed; the signing time is printed apart), then times the sync worker
draining the queue to the sandbox backend (its own process, HTTP on 127.0.0.1): once without
faults, once with the backend's fault injection on a share of requests (errors before and after
commit, connection resets, timeouts, malformed answers, Retry-After). After each run the backend
must hold every row exactly once (no duplicates, no gaps) and the terminal queue must be empty.

Prints one JSON object: seconds, transactions/s, requests made and requests per transaction for
each run, what was injected, the targets (>= 2,000 tx/s without faults; with faults all delivered
exactly once in at most 3x the fault-free time), and the machine.

    .venv/bin/python scripts/bench_sync.py [--transactions 10000] [--fault-rate 0.2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import machine

from sandbox import Sandbox, start_sandbox
from terminal.bootstrap import bootstrap
from terminal.config import config_from_mapping
from terminal.core.money import Money
from terminal.journal import NewTransaction
from terminal.service import Service

TERMINAL = "WPOS0001"


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "backend": {"request_timeout_ms": args.request_timeout_ms, "connect_timeout_ms": 1000,
                    "breaker_failures": 3, "breaker_reset_ms": 200},
        "sync": {"batch_size": args.batch_size, "backoff_initial_ms": 50, "backoff_max_ms": 1000,
                 "retry_after_max_ms": 5000, "compress": not args.no_compress},
    }


def fill(svc: Service, n: int) -> None:
    """n offline-approved card sales, as the payment flow would journal them (not timed)."""
    journal = svc.require_journal()
    day = svc.business_date()
    for i in range(n):
        journal.txns.append(
            NewTransaction(kind="sale", amount=Money(100 + i % 9000, svc.currency), method="card",
                           decision="approved", reasons=("below_floor_limit",), auth_mode="offline",
                           scheme="unionpay", card_token=f"tok{i % 500:04d}", masked_pan="622202******1234",
                           details={"aid": "A000000333010101", "atc": i}),
            now=svc.clock(), business_date=day)


def run(sandbox: Sandbox, data_dir: Path, args: argparse.Namespace, fault_rate: float) -> dict[str, Any]:
    sandbox.admin.reset()
    svc = bootstrap(config_from_mapping({"backend": {"url": sandbox.url, **settings(args)["backend"]},
                                         "sync": settings(args)["sync"]}), data_dir)
    try:
        svc.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
        fill(svc, args.transactions)
        # housekeeping signs rows every few seconds after they are written (Payments.housekeeping), so a
        # backlog is signed long before the link comes back; timed apart from the forwarding
        t_sign = time.perf_counter()
        svc.housekeeping()
        signing_seconds = time.perf_counter() - t_sign
        if fault_rate:
            sandbox.admin.faults(rate=fault_rate, timeout_ms=args.request_timeout_ms + 200,
                                 retry_after_s=1, seed=args.seed, cycle=True)
        requests_before = svc.backend.requests_made
        t0 = time.perf_counter()
        reports = svc.run_sync(timeout_s=args.max_seconds)
        seconds = time.perf_counter() - t0
        requests = svc.backend.requests_made - requests_before
        stats = sandbox.admin.stats(TERMINAL)
        sandbox.admin.faults_off()
        queue = svc.require_journal().sync.queue_summary()["pending"]
        exactly_once = (stats["stored"] == stats["distinct_ids"] == args.transactions and stats["gaps"] == []
                        and stats["min_seq"] == 1 and stats["max_seq"] == args.transactions and queue == 0)
        injected = {k: v for k, v in stats["faults"]["injected"].items() if ":" not in k}
        return {
            "fault_rate": fault_rate,
            "seconds": round(seconds, 3),
            "signing_seconds_before_sync": round(signing_seconds, 3),
            "transactions_per_s": round(args.transactions / seconds, 1),
            "requests": requests,
            "requests_per_transaction": round(requests / args.transactions, 4),
            "cycles": len(reports),
            "failed_cycles": sum(1 for r in reports if not r.ok),
            "faults_injected": injected,
            "rows_resent_and_answered_duplicate": stats["duplicates_received"],
            "backend_rows": stats["stored"],
            "terminal_queue_after": queue,
            "exactly_once": exactly_once,
        }
    finally:
        svc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=10_000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--request-timeout-ms", type=int, default=1000)
    parser.add_argument("--no-compress", action="store_true", help="send upload bodies uncompressed")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="walletpos-bench-sync-") as tmp, start_sandbox() as sandbox:
        clean = run(sandbox, Path(tmp) / "clean", args, 0.0)
        faulty = run(sandbox, Path(tmp) / "faulty", args, args.fault_rate)
    ratio = faulty["seconds"] / clean["seconds"]
    result = {
        "benchmark": "sync_forwarding",
        "transactions": args.transactions,
        "transport": "HTTP over loopback to the sandbox backend (own process), Ed25519-signed requests",
        "settings": settings(args),
        "fault_plan": {"rate": args.fault_rate, "kinds_in_turn": ["error", "reset", "timeout", "malformed",
                                                                  "retry_after"],
                       "timeout_hold_ms": args.request_timeout_ms + 200, "retry_after_s": 1, "seed": args.seed},
        "no_faults": clean,
        "with_faults": faulty,
        "faults_time_ratio": round(ratio, 2),
        "targets": {
            "no_faults_min_tx_per_s": 2000,
            "no_faults_met": clean["transactions_per_s"] >= 2000 and clean["exactly_once"],
            "with_faults_max_time_ratio": 3.0,
            "with_faults_met": faulty["exactly_once"] and ratio <= 3.0,
        },
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
