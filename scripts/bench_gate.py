#!/usr/bin/env python3
"""Benchmark: a transit gate's decision time and sustained throughput. Prints one JSON object.

- `pcsc`: tap to gate open, in software, through real pcscd + vpcd: from `wait_for_card` with the card
  in the field, through the EMV kernel, the gate rules, the fare engine and the durable journal row
  (one write transaction), to the gate hardware's open command (the simulated gate). Goal p99 <= 15 ms.
- `nfc_udp`: the same through nfcpy's udp driver, from card arrival (sense, activation, the APDUs over
  ISO-DEP blocks to another process). Goal p99 <= 100 ms.
- `sustained`: one gate (a two-way gate at one station) for an hour of simulated traffic at 60
  passengers a minute (each rides in and out: 3,600 taps, the clock moved to each tap's time), first
  on an empty journal, then on a journal of 1,000,000 rows built through the real append API
  (`Session.append`, signed by housekeeping) with a 1,000,000-entry deny list loaded: decision p50 and
  p99 on both, and the ratio (the decision must not grow with the journal), taps decided per second,
  the deny list's memory, RSS.

Usage: scripts/bench_gate.py [--quick] [--taps N] [--rows N] [--deny N] [--passengers-per-min N]
       [--minutes N] [--parts pcsc,nfc,sustained] [--dir DIR]
`--quick` (CI-sized): 200 taps per transport, 20,000 rows, 20,000 deny entries, 10 minutes of traffic.
The full run (the figures in README.md) takes a few minutes; run it under the pcscd lock
(`flock /tmp/walletpos-pcscd.lock scripts/bench_gate.py`).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.sim.cards import make_card  # noqa: E402
from drivers.simgate import SimGate  # noqa: E402
from drivers.simreader import SimReader  # noqa: E402
from scripts.benchkit import machine, percentile  # noqa: E402
from terminal.bootstrap import bootstrap  # noqa: E402
from terminal.config import config_from_mapping  # noqa: E402
from terminal.core.money import Money  # noqa: E402
from terminal.journal import NewTransaction  # noqa: E402
from terminal.service import Service  # noqa: E402
from terminal.transit import GatePlace  # noqa: E402

METRO = ROOT / "config" / "fares-metro.toml"
A_IN, B_OUT = GatePlace("A-01", "PSQ", "entry"), GatePlace("B-02", "CTP", "exit")
TWO_WAY = GatePlace("A-03", "PSQ", "both")
START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai, a Monday


class Clock:
    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def gate_service(directory: Path, clock: Clock) -> Service:
    config = config_from_mapping({
        "terminal": {"mode": "transit"}, "backend": {"enabled": False},
        "offline": {"exposure_cap": "100000000.00"},
        "transit": {"fare_table": str(METRO), "station": "PSQ", "direction": "both", "max_hours_since_sync": 720},
    })
    return bootstrap(config, directory, clock=clock, env={})


def luhn_pan(body: str) -> str:
    digits = [int(d) for d in body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


def stats(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_ms": round(percentile(values, 0.5), 3), "p90_ms": round(percentile(values, 0.9), 3),
            "p99_ms": round(percentile(values, 0.99), 3), "max_ms": round(max(values), 3)}


def decide(svc: Service, reader: Any, gate: SimGate, place: GatePlace) -> tuple[float, Any]:
    """One tap with the card in the field: wait_for_card -> decision, journal -> gate opened."""
    t0 = time.perf_counter()
    session = None
    while session is None:
        session = reader.wait_for_card(2.0)
    with session:
        result = svc.gate_tap(session, place, started=t0)
    if result.opens_gate:
        gate.open_for_one(6000)
    return (time.perf_counter() - t0) * 1000, result


def run_transport(svc: Service, clock: Clock, reader: Any, taps: int) -> dict[str, Any]:
    gate = SimGate()
    times: list[float] = []
    kernel: list[float] = []
    outcomes: dict[str, int] = {}
    for i in range(taps + 20):
        place = A_IN if i % 2 == 0 else B_OUT
        clock.now += timedelta(minutes=20 if i % 2 == 0 else 35)
        ms, result = decide(svc, reader, gate, place)
        if i >= 20:  # warm-up left out
            times.append(ms)
            kernel.append(result.timings_ms.get("card", float("nan")))
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    return {**stats(times), "card_read_p50_ms": round(percentile(kernel, 0.5), 3), "outcomes": outcomes}


def bench_pcsc(directory: Path, taps: int) -> dict[str, Any]:
    from drivers.pcsc import PcscReader
    from drivers.sim.pcscd import ensure_pcscd
    from drivers.sim.vpcd import VpcdCardServer

    handle = ensure_pcscd()
    try:
        clock = Clock()
        svc = gate_service(directory / "pcsc", clock)
        reader = PcscReader("Virtual PCD")
        try:
            with VpcdCardServer() as server:
                server.insert(make_card("visa"))
                out = run_transport(svc, clock, reader, taps)
        finally:
            reader.close()
            svc.close()
    finally:
        if handle.owned:
            handle.stop()
    return {**out, "goal_p99_ms": 15, "goal_met": out["p99_ms"] <= 15}


def bench_nfc(directory: Path, taps: int) -> dict[str, Any]:
    from drivers.nfc import NfcReader
    from drivers.sim.nfc_card import free_udp_port, start_nfc_card

    clock = Clock()
    svc = gate_service(directory / "nfc", clock)
    try:
        with start_nfc_card("visa", free_udp_port()) as card:
            reader = NfcReader(card.device)
            try:
                out = run_transport(svc, clock, reader, taps)
            finally:
                reader.close()
    finally:
        svc.close()
    return {**out, "from": "card arrival (sense, activation, APDUs, decision, journal, gate open)",
            "goal_p99_ms": 100, "goal_met": out["p99_ms"] <= 100}


# -- sustained traffic on a large journal -------------------------------------------------------------------

def build_history(svc: Service, rows: int, deny: int, clock: Clock) -> dict[str, Any]:
    """`rows` fare rows of earlier weeks (100,000 cards), appended through the journal's own write
    sessions (10,000 rows a transaction) and signed by housekeeping; `deny` tokens on the deny list."""
    journal = svc.require_journal()
    cur = svc.currency
    t0 = time.perf_counter()
    per_tx = 10_000
    first_day = (clock.now - timedelta(days=70)).date()
    done = 0
    while done < rows:
        with journal.session(now=clock.now) as session:
            for i in range(done, min(rows, done + per_tx)):
                day = first_day + timedelta(days=(i * 60) // rows)
                at = datetime(day.year, day.month, day.day, 2, tzinfo=UTC) + timedelta(seconds=i % 50_000)
                session.append(NewTransaction(
                    kind="fare", amount=Money(300 + i % 200, cur), method="card", decision="approved",
                    reasons=("fare_charged",), auth_mode="offline", scheme="visa", card_token=f"hist{i % 100_000:08d}",
                    masked_pan="476173******0010", details={"station": "LJZ", "gate": "L-1", "direction": "exit"}),
                    now=at, business_date=day)
        done = min(rows, done + per_tx)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    journal.housekeeping(clock.now)
    sign_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    step = 100_000
    for start in range(0, deny, step):
        entries = [(f"deny{i:010d}", "lost_or_stolen") for i in range(start, min(deny, start + step))]
        journal.apply_deny_delta(start // step + 1, entries, [], now=clock.now)
    deny_s = time.perf_counter() - t2
    return {"rows": rows, "append_s": round(build_s, 1), "sign_and_checkpoint_s": round(sign_s, 1),
            "deny_entries": deny, "deny_load_s": round(deny_s, 1)}


def traffic(svc: Service, clock: Clock, passengers_per_min: int, minutes: int, denied_pans: set[str],
            pans: list[str]) -> dict[str, Any]:
    """Each passenger taps in and, 5 to 30 minutes later, out at one two-way gate."""
    rng = random.Random(7)
    passengers = passengers_per_min * minutes // 2
    start = clock.now
    events: list[tuple[datetime, str]] = []
    for p in range(passengers):
        pan = pans[p % len(pans)]
        t_in = start + timedelta(seconds=rng.uniform(0, minutes * 60 - 1800 if minutes > 30 else minutes * 30))
        events.append((t_in, pan))
        events.append((t_in + timedelta(seconds=rng.uniform(300, 1800 if minutes > 30 else minutes * 30)), pan))
    events.sort()
    reader, gate = SimReader(), SimGate()
    times: list[float] = []
    outcomes: dict[str, int] = {}
    wall0 = time.perf_counter()
    for when, pan in events:
        clock.now = max(clock.now, when)
        reader.tap(make_card("visa", pan=pan))
        ms, result = decide(svc, reader, gate, TWO_WAY)
        times.append(ms)
        key = result.outcome if result.outcome != "stop" else f"stop:{result.reasons[0]}"
        outcomes[key] = outcomes.get(key, 0) + 1
    wall = time.perf_counter() - wall0
    return {**stats(times), "taps": len(events), "simulated_minutes": minutes,
            "taps_per_second_decided": round(len(events) / wall, 1), "outcomes": outcomes}


def bench_sustained(directory: Path, rows: int, deny: int, per_min: int, minutes: int) -> dict[str, Any]:
    pans = [luhn_pan(f"476173900{i:06d}") for i in range(3000)]
    denied = set(pans[::100])
    out: dict[str, Any] = {}
    for label, history in (("empty_journal", False), ("large_journal", True)):
        clock = Clock()
        svc = gate_service(directory / label, clock)
        try:
            built: dict[str, Any] = {}
            journal = svc.require_journal()
            if history:
                built = build_history(svc, rows, deny, clock)
            assert svc.keys is not None
            journal.apply_deny_delta(10**6, [(svc.keys.card_token(p), "lost_or_stolen") for p in denied], [],
                                     now=clock.now)
            t_first = time.perf_counter()
            _ = svc.terminal_state(None)  # the head, checked
            result = traffic(svc, clock, per_min, minutes, denied, pans)
            result["first_pass_s"] = round(time.perf_counter() - t_first, 2)
            head = journal.head()
            result.update(built, journal_rows_after=head.txn_seq, deny_list_entries=head.deny_count,
                          deny_list_memory_bytes=journal.deny.memory_bytes())
            out[label] = result
        finally:
            svc.close()
    out["p99_ratio_large_to_empty"] = round(out["large_journal"]["p99_ms"] / out["empty_journal"]["p99_ms"], 2)
    out["rss_max_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--taps", type=int, help="taps per transport (default 1000, quick 200)")
    parser.add_argument("--rows", type=int, help="journal rows (default 1,000,000, quick 20,000)")
    parser.add_argument("--deny", type=int, help="deny-list entries (default 1,000,000, quick 20,000)")
    parser.add_argument("--passengers-per-min", type=int, default=60)
    parser.add_argument("--minutes", type=int, help="simulated minutes of traffic (default 60, quick 10)")
    parser.add_argument("--parts", default="pcsc,nfc,sustained")
    parser.add_argument("--dir", type=Path, help="data directory (default: a temporary one)")
    args = parser.parse_args()
    taps = args.taps or (200 if args.quick else 1000)
    rows = args.rows if args.rows is not None else (20_000 if args.quick else 1_000_000)
    deny = args.deny if args.deny is not None else (20_000 if args.quick else 1_000_000)
    minutes = args.minutes or (10 if args.quick else 60)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp:
        directory = args.dir or Path(tmp)
        result: dict[str, Any] = {"benchmark": "gate", "machine": machine(), "quick": args.quick,
                                  "date": date.today().isoformat()}
        if "pcsc" in parts:
            result["pcsc"] = bench_pcsc(directory, taps)
        if "nfc" in parts:
            result["nfc_udp"] = bench_nfc(directory, taps)
        if "sustained" in parts:
            result["sustained"] = bench_sustained(directory, rows, deny, args.passengers_per_min, minutes)
        result["rss_max_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
