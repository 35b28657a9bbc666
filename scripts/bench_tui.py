#!/usr/bin/env python3
"""Benchmark: the cashier's screen as a cashier meets it, in a real pseudo-terminal (80x24).

Prints one JSON object:
- cold_start_ms: from spawning `walletpos tui` to the sign-in screen being on the terminal
  (median and max of several runs; each run a new process);
- keypress_to_repaint_ms: from writing one key to the terminal until the new amount is in the
  terminal output, on the checkout screen, while the sync worker of the same process uploads 5,000
  queued transactions to the sandbox backend on 127.0.0.1 (p50, p95, max over all keys);
- peak_rss_mb: the TUI process's peak resident memory (VmHWM) at the end of the sale;
- burst_typing: amounts typed on the checkout in bursts, digits and Enter with no pause for the
  screen (as a keypad or a barcode scanner sends them), at rising key rates and last as one write
  of the whole burst; each amount is taken in exact cash (X on the payment screen) and the journal
  is read afterwards: every cash row must carry exactly the amount typed, in the order typed. It
  reports, per rate, the amounts and keys typed, the rate the keys were written at, the time from
  the first key to the payment screen, the amounts journaled wrong or missing (an Enter that
  brought no payment screen counts too), and the highest rate written with no loss. From the
  second amount on, the burst starts with the Enter that leaves the previous result for a new
  sale, so the keys also cross from one screen to the next without a pause.
Targets: cold start <= 1.5 s, keypress-to-repaint p95 <= 50 ms, peak RSS <= 250 MB, no loss at any
burst rate.

The sandbox adds a fixed latency per request (like a real network link) so the upload of the 5,000
rows lasts longer than the typing; the JSON shows how many rows the backend held when the typing
started and ended, which proves the upload ran during the measurement.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import random
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from benchkit import machine, percentile

from sandbox import start_sandbox
from terminal.bootstrap import bootstrap
from terminal.config import config_from_mapping
from terminal.core.money import Money, currency, format_money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts

ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[PX^_].*?\x1b\\|\x1b\][^\x07]*\x07|\x1b[@-Z\\-_]")


class Terminal:
    """`walletpos tui` in a pseudo-terminal of a fixed size; output is read as it comes."""

    def __init__(self, args: list[str], env: dict[str, str], cols: int = 80, rows: int = 24) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
                                     start_new_session=True)
        os.close(slave)
        self.buffer = b""

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return b""
        try:
            chunk = os.read(self.master, 65536)
        except OSError:
            return b""
        self.buffer += chunk
        return chunk

    def wait_for(self, text: str, timeout: float, since: int = 0) -> float:
        """Seconds until `text` is on the output after byte offset `since` (raises on timeout)."""
        needle = text.encode()
        deadline = time.perf_counter() + timeout
        while True:
            plain = ANSI.sub(b"", self.buffer[since:])
            if needle in plain:
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{text!r} did not appear within {timeout}s")
            self.read(0.05)

    def send(self, data: str) -> int:
        mark = len(self.buffer)
        os.write(self.master, data.encode())
        return mark

    def send_paced(self, keys: str, gap_s: float) -> tuple[int, float, float]:
        """Write `keys` one at a time, `gap_s` apart (0: all in one write), without waiting for the
        screen; the output is drained meanwhile. Returns the output offset and the times of the
        first and the last write."""
        mark = len(self.buffer)
        first = time.perf_counter()
        if gap_s <= 0:
            os.write(self.master, keys.encode())
            return mark, first, time.perf_counter()
        due = first
        for key in keys:
            while time.perf_counter() < due:
                pass
            os.write(self.master, key.encode())
            due += gap_s
            self.read(0)
        return mark, first, time.perf_counter()

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        os.close(self.master)


def prepare(base: Path, name: str, terminal_id: str, sandbox, rows: int) -> tuple[Path, Path]:
    """A data directory with an operator, enrolled with the sandbox, and `rows` queued sales."""
    config = {
        "terminal": {"id": terminal_id},
        "backend": {"url": sandbox.url},
        "sync": {"interval_ms": 200, "batch_size": 50, "backoff_initial_ms": 100},
        "offline": {"card_daily_count": 10000, "card_daily_amount": "1000000.00", "exposure_cap": "100000000.00"},
        "operators": {"idle_sign_out_minutes": 0},
    }
    config_file = base / f"{name}.toml"
    config_file.write_text("\n".join(
        f"[{section}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items()) + "\n"
        for section, values in config.items()))
    data = base / name
    svc = bootstrap(config_from_mapping(config), data)
    try:
        svc.operators.add("cash1", "Bench Cashier", "cashier", "1111", now=svc.clock())
        svc.enrol_backend(sandbox.admin.enrolment_token(terminal_id))
        for i in range(rows):
            result = svc.pay(PaymentRequest(Money(500 + i % 90, svc.currency), Method.CARD, card_token=f"t{i % 50}"),
                             CardFacts(scheme="unionpay", masked_pan="622202******1234"))
            assert result.approved, result.message
    finally:
        svc.close()
    return config_file, data


def spawn(config_file: Path, data: Path) -> Terminal:
    env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
    env.pop("WALLETPOS_CONFIG", None)
    # a terminal runs from compiled bytecode (pip writes it at install, a checkout's first run writes
    # __pycache__): without it every cold start would compile ~200 modules again (~0.5 s here)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return Terminal([sys.executable, "-m", "terminal.cli", "--config", str(config_file), "--data-dir", str(data),
                     "tui", "--locale", "en"], env)



def sign_in(term: Terminal) -> None:
    """The cashier signs in on the sign-in screen and reaches the checkout."""
    term.wait_for("Operator", 30)
    term.send("cash1\r")
    time.sleep(0.3)
    term.send("1111\r")
    term.wait_for("New sale", 30)

BURST_RATES = (50, 100, 250, 500, 1000, 2000, 5000, 0)  # keys per second; 0: the whole burst in one write


def random_amount(rng: random.Random) -> str:
    """The digits of an amount as a cashier keys it: 1 to 7 digits, no leading zero, zeros inside."""
    digits = rng.randint(1, 7)
    return str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(digits - 1))


def burst_typing(term: Terminal, amounts_per_rate: int, seed: int) -> tuple[list[dict], list[tuple[int, str]]]:
    """Type amounts in bursts at each rate of BURST_RATES on the checkout (signed in), each taken in
    exact cash; from the second on, the burst starts with the Enter that leaves the previous result
    for a new sale (so the keys cross from the result to the checkout without a pause). Returns
    per-rate figures (the journal not checked yet; an amount whose Enter brought no payment screen
    is counted lost here) and the (rate index, digits) of every amount charged."""
    rng = random.Random(seed)
    levels, charged = [], []
    on_result = False
    for index, rate in enumerate(BURST_RATES):
        gap = 1 / rate if rate else 0.0
        offered, taken, keys, not_charged = [], [], 0, 0
        for _ in range(amounts_per_rate):
            amount = random_amount(rng)
            burst = ("\r" if on_result else "") + amount + "\r"
            mark, first, last = term.send_paced(burst, gap)
            keys += len(burst)
            try:
                up = term.wait_for("Present card or code", 5, since=mark)
            except TimeoutError:  # a key lost: back to an empty checkout for the next amount
                not_charged += 1
                term.send("\x1b\x1b[3~")
                time.sleep(0.5)
                on_result = False
                continue
            if last > first:
                offered.append((len(burst) - 1) / (last - first))
            taken.append((up - first) * 1000)
            charged.append((index, amount))
            mark = term.send("x")  # exact cash: the amount on the payment screen is journaled
            term.wait_for("APPROVED", 10, since=mark)
            on_result = True
        levels.append({
            "rate_keys_per_s": rate or "one write",
            "written_keys_per_s_median": round(statistics.median(offered)) if offered else None,
            "amounts": amounts_per_rate, "keys": keys,
            "first_key_to_payment_screen_ms_median": round(statistics.median(taken), 1) if taken else None,
            "amounts_wrong_or_missing": not_charged,
        })
    if on_result:
        mark = term.send("\r")
        term.wait_for("No items", 10, since=mark)  # the checkout, cleared for the next sale
    return levels, charged


def check_journal(config_file: Path, data: Path, charged: list[tuple[int, str]], levels: list[dict]) -> int:
    """Read the cash sales of the burst terminal's journal (the TUI closed) and count, per rate, the
    amounts journaled wrong or missing against what was typed, in order; returns the cash sales found."""
    svc = bootstrap(config_path=config_file, data_dir=data, env={})
    try:
        cash = [row["amount"] for row in svc.export_journal(None) if row["method"] == "cash" and row["kind"] == "sale"]
    finally:
        svc.close()
    for j, (index, digits) in enumerate(charged):
        if j >= len(cash) or cash[j] != int(digits):
            levels[index]["amounts_wrong_or_missing"] += 1
    levels[-1]["amounts_wrong_or_missing"] += max(0, len(cash) - len(charged))  # a sale nobody typed
    return len(cash)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20, help="rounds of 9 digits and a clear (10 keys each)")
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--latency-ms", type=int, default=40, help="sandbox latency per request")
    ap.add_argument("--burst-amounts", type=int, default=20, help="amounts typed in bursts at each key rate")
    ap.add_argument("--seed", type=int, default=15, help="seed of the random amounts")
    args = ap.parse_args()

    sandbox = start_sandbox()
    try:
        with tempfile.TemporaryDirectory(prefix="walletpos-bench-tui-") as tmp:
            base = Path(tmp)
            cold_config, cold_data = prepare(base, "cold", "BENCHCLD", sandbox, 0)
            cold: list[float] = []
            for _ in range(args.cold_runs):
                term = spawn(cold_config, cold_data)
                try:
                    cold.append((term.wait_for("Operator", 30) - term.started) * 1000)
                finally:
                    term.close()

            config_file, data = prepare(base, "sale", "BENCHTUI", sandbox, args.rows)
            sandbox.admin.faults(latency_ms=args.latency_ms)
            term = spawn(config_file, data)
            try:
                sign_in(term)
                deadline = time.monotonic() + 30
                while sandbox.admin.stats("BENCHTUI")["stored"] == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                rows_at_start = sandbox.admin.stats("BENCHTUI")["stored"]
                latencies: list[float] = []
                cny = currency("CNY")
                for _ in range(args.rounds):
                    minor = 0
                    for digit in "123456789":
                        minor = minor * 10 + int(digit)
                        shown = format_money(Money(minor, cny))
                        mark = term.send(digit)
                        t0 = time.perf_counter()
                        latencies.append((term.wait_for(shown, 5, since=mark) - t0) * 1000)
                        time.sleep(0.02)
                    mark = term.send("\x1b[3~")  # Delete: clear the amount
                    t0 = time.perf_counter()
                    latencies.append((term.wait_for("¥0.00", 5, since=mark) - t0) * 1000)
                    time.sleep(0.02)
                rows_at_end = sandbox.admin.stats("BENCHTUI")["stored"]
                rss = term.peak_rss_mb()
            finally:
                term.close()
                sandbox.admin.faults_off()

            burst_config, burst_data = prepare(base, "burst", "BENCHBST", sandbox, 0)
            term = spawn(burst_config, burst_data)
            try:
                sign_in(term)
                time.sleep(0.5)
                levels, charged = burst_typing(term, args.burst_amounts, args.seed)
            finally:
                term.close()
            journaled = check_journal(burst_config, burst_data, charged, levels)
    finally:
        sandbox.stop()
    clean = [level for level in levels if level["amounts_wrong_or_missing"] == 0]
    written = [level["written_keys_per_s_median"] for level in clean
               if level["written_keys_per_s_median"] and level["rate_keys_per_s"] != "one write"]
    lost = sum(level["amounts_wrong_or_missing"] for level in levels)

    result = {
        "benchmark": "tui",
        "terminal": "80x24 pseudo-terminal, TERM=xterm-256color",
        "cold_start_ms": {"runs": len(cold), "median": round(statistics.median(cold), 1), "max": round(max(cold), 1)},
        "keypress_to_repaint_ms": {
            "keys": len(latencies), "p50": round(percentile(latencies, 0.5), 2),
            "p95": round(percentile(latencies, 0.95), 2), "max": round(max(latencies), 2),
        },
        "sync_during_typing": {"queued_rows": args.rows, "backend_rows_when_typing_started": rows_at_start,
                               "backend_rows_when_typing_ended": rows_at_end,
                               "sandbox_latency_per_request_ms": args.latency_ms,
                               "uploading_throughout": rows_at_start > 0 and rows_at_end < args.rows},
        "peak_rss_mb": round(rss, 1),
        "burst_typing": {
            "how": "Enter on the last result, the digits of an amount and Enter, with no pause for the screens, "
                   "at each rate and as one write, each amount taken in exact cash; the journaled cash sales "
                   "compared with the amounts typed, in order; rates are as written to the terminal (median "
                   "per burst)",
            "amounts_typed": sum(level["amounts"] for level in levels),
            "keys_typed": sum(level["keys"] for level in levels),
            "cash_sales_journaled": journaled,
            "amounts_wrong_or_missing": lost,
            "highest_rate_no_loss_keys_per_s": max(written) if written else 0,  # paced, as written
            "one_write_no_loss": any(level["rate_keys_per_s"] == "one write" for level in clean),
            "by_rate": levels,
        },
        "targets": {"cold_start_ms": 1500, "keypress_to_repaint_p95_ms": 50, "peak_rss_mb": 250,
                    "burst_amounts_wrong_or_missing": 0},
        "machine": machine(),
    }
    result["targets_met"] = (result["cold_start_ms"]["median"] <= 1500
                             and result["keypress_to_repaint_ms"]["p95"] <= 50 and rss <= 250 and lost == 0)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
