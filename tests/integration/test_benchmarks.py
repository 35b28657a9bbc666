"""Every benchmark script runs and prints its JSON, at a tiny size (a script broken by a change to
what it measures is otherwise found only when someone needs its figures). Nothing here judges a
figure: performance is for the scripts at their full sizes, never for assertions on times."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(300)


def bench(name: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETPOS_")}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / f"bench_{name}.py"), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert isinstance(result, dict) and result["benchmark"], proc.stdout[:500]
    return result


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def test_bench_journal():
    out = bench("journal", "--appends", "48", "--decisions", "2000")
    assert out["appends"] == 48
    assert all(number(out[k]) for k in ("journal_appends_per_s", "raw_sqlite_inserts_per_s",
                                         "journal_to_raw_ratio_median_of_pairs", "rule_decisions_per_s"))


def test_bench_sync_delivers_every_row_exactly_once_with_and_without_faults():
    out = bench("sync", "--transactions", "200", "--max-seconds", "60")
    for run in ("no_faults", "with_faults"):
        assert out[run]["exactly_once"] is True and out[run]["backend_rows"] == 200, out[run]
        assert number(out[run]["transactions_per_s"]) and number(out[run]["signing_seconds_before_sync"])


def test_bench_qr():
    out = bench("qr", "--per-category", "1")
    assert out["corpus"]["frames"] == 12
    for decoder in ("walletpos_pipeline", "zxing_cpp_alone", "pyzbar_alone"):
        figures = out["decoders"][decoder]
        assert 0 <= figures["decode_rate"] <= 1 and number(figures["p95_ms"]), figures


@pytest.mark.pcsc  # the doctor checks the configured reader: pcscd and its virtual reader
def test_bench_doctor():
    out = bench("doctor", "--runs", "1")
    assert out["runs"] == 1 and number(out["total_ms"]["median"]) and out["statuses"]["fail"] == 0, out


@pytest.mark.slow
def test_bench_scale():
    out = bench("scale", "--sizes", "100,500")
    assert out["sizes"] == [100, 500] and number(out["worst_growth_ratio"])
    assert all(number(op["growth_ratio"]) for op in out["operations"].values()), out["operations"]
    assert all(number(mb) for mb in out["peak_rss_mb"].values())


@pytest.mark.slow
def test_bench_tui_loses_no_burst_amount():
    out = bench("tui", "--cold-runs", "1", "--rounds", "1", "--rows", "20", "--burst-amounts", "1",
                "--latency-ms", "0")
    assert number(out["cold_start_ms"]["median"]) and number(out["keypress_to_repaint_ms"]["p95"])
    assert out["burst_typing"]["amounts_wrong_or_missing"] == 0 and out["burst_typing"]["cash_sales_journaled"] > 0


def test_bench_gate_sustained():
    out = bench("gate", "--parts", "sustained", "--rows", "500", "--deny", "500", "--minutes", "1")
    assert out["sustained"]["empty_journal"]["taps"] == 60 and number(out["sustained"]["empty_journal"]["p99_ms"])


@pytest.mark.pcsc
@pytest.mark.nfc
def test_bench_tap_and_gate_through_pcscd_and_nfcpy_udp():
    tap = bench("tap", "--taps", "5", "--nfc-taps", "5")
    assert tap["pcsc"]["visa"]["taps"] == tap["nfc_udp"]["visa"]["taps"] == 5 and number(tap["pcsc"]["visa"]["p99_ms"])
    gate = bench("gate", "--parts", "pcsc,nfc", "--taps", "5", "--rows", "100", "--deny", "100", "--minutes", "1")
    assert gate["pcsc"] and gate["nfc_udp"], gate
