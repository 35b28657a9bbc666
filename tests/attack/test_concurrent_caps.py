"""Finding 1: offline caps under concurrency. Several real processes pay on one data directory at
once; the decision's reads and the append are one write transaction, so no cap can be passed.
Each test prints what it tried and what passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ROOT, WALLETPOS

pytestmark = pytest.mark.timeout(180)
HERE = Path(__file__).resolve().parent


def write_config(path: Path, **offline: object) -> Path:
    lines = ["[backend]", "enabled = false", "", "[offline]", *(f"{k} = {json.dumps(v)}" for k, v in offline.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def env_for(data: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETPOS_")}
    env.update(WALLETPOS_DATA_DIR=str(data), WALLETPOS_CONFIG=str(config), PYTHONPATH=str(ROOT))
    return env


def eight_taps_at_once(data: Path, config: Path) -> list[int]:
    """`walletpos tap --amount 10.00 --sim-card visa`, eight processes started together."""
    env = env_for(data, config)
    subprocess.run([*WALLETPOS, "status"], env=env, capture_output=True, timeout=60, check=True)  # keys, journal
    procs = [subprocess.Popen([*WALLETPOS, "tap", "--amount", "10.00", "--sim-card", "visa", "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    return [p.wait(timeout=120) for p in procs]


@pytest.mark.parametrize(("cap", "offline"), [
    ("card_daily_count = 3", {"card_daily_count": 3}),
    ("card_daily_amount = 30.00", {"card_daily_amount": "30.00", "card_daily_count": 100}),
    ("exposure_cap = 30.00", {"exposure_cap": "30.00", "card_daily_count": 100}),
])
def test_eight_tap_processes_at_once_never_pass_a_cap(tmp_path, cap, offline):
    data = tmp_path / "data"
    codes = eight_taps_at_once(data, write_config(tmp_path / "t.toml", **offline))
    approved = codes.count(0)
    declined = codes.count(10) + codes.count(11)  # 11: declined offline where only the backend could approve
    print(f"\n8 concurrent `walletpos tap --amount 10.00` with {cap}: {approved} approved, "
          f"{declined} declined (exit codes {sorted(codes)})")
    assert approved == 3 and declined == 5, codes
    verify = subprocess.run([*WALLETPOS, "journal", "verify", "--json"], env=env_for(data, tmp_path / "t.toml"),
                            capture_output=True, text=True, timeout=60)
    assert json.loads(verify.stdout)["ok"], verify.stdout


def test_two_processes_times_three_payments_stay_within_a_cap_of_three_in_every_round(tmp_path):
    data = tmp_path / "data"
    config = write_config(tmp_path / "t.toml", card_daily_count=3, card_daily_amount="100000.00",
                          exposure_cap="100000000.00")
    start = tmp_path / "go"
    rounds = 40
    env = env_for(data, config)
    subprocess.run([*WALLETPOS, "status"], env=env, capture_output=True, timeout=60, check=True)
    procs = [subprocess.Popen([sys.executable, str(HERE / "pay_worker.py"), str(data), str(config), str(start), "tok",
                               str(rounds), "3", "1000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    start.touch()
    lines = []
    for p in procs:
        out, err = p.communicate(timeout=150)
        assert p.returncode == 0, err
        lines += out.split()
    approvals = Counter(r for r, outcome in zip(lines[::2], lines[1::2], strict=True) if outcome == "approved")
    over = [r for r in range(rounds) if approvals[str(r)] > 3]
    print(f"\n2 processes x 3 payments x {rounds} rounds ({len(lines) // 2} payments): rounds over the cap of 3: "
          f"{len(over)}, approvals per round {sorted(set(approvals.values()))}")
    assert not over and all(approvals[str(r)] == 3 for r in range(rounds))
