"""`walletpos backend enrol` and `walletpos sync` as an operator runs them (real subprocesses, real
sandbox), including a terminal killed with SIGKILL in the middle of a sync."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from terminal.bootstrap import bootstrap
from tests.backend.conftest import FAST_BACKEND, FAST_SYNC, TERMINAL, assert_exactly_once, fill
from tests.conftest import WALLETPOS

pytestmark = pytest.mark.timeout(120)


def write_config(path: Path, url: str, **backend: object) -> Path:
    settings = {**FAST_BACKEND, **backend}
    lines = ["[backend]", f'url = "{url}"', *(f"{k} = {v}" for k, v in settings.items()), "", "[sync]",
             *(f"{k} = {v}" for k, v in {**FAST_SYNC, "batch_size": 50}.items()), "", "[offline]",
             "card_daily_count = 10000", 'card_daily_amount = "1000000.00"', 'exposure_cap = "100000000.00"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*WALLETPOS, *args], capture_output=True, text=True, env=env, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def env(cli_env: dict[str, str], sandbox, tmp_path: Path) -> dict[str, str]:
    cli_env["WALLETPOS_CONFIG"] = str(write_config(tmp_path / "terminal.toml", sandbox.url, request_timeout_ms=30000))
    return cli_env


def test_enrol_sync_and_status_from_the_command_line(env, sandbox, data_dir):
    status = json.loads(run(env, "sync", "--status", "--json").stdout)
    assert status["enrolled"] is False and "walletpos backend enrol" in status["enrolment_problem"]
    proc = run(env, "sync", "--once", ok=False)
    assert proc.returncode == 11 and "not enrolled" in proc.stdout

    bad = run(env, "backend", "enrol", "--token", "x" * 24, ok=False)
    assert bad.returncode == 11 and "enrolment token is unknown" in bad.stderr
    # a URL-safe token may start with "-" (one time in 64): it reaches the backend, not a usage error
    dash = run(env, "backend", "enrol", "--token", "-" + "x" * 23, ok=False)
    assert dash.returncode == 11 and "enrolment token is unknown" in dash.stderr
    token = sandbox.admin.enrolment_token(TERMINAL)
    out = json.loads(run(env, "backend", "enrol", "--token", token, "--json").stdout)
    assert out["terminal_id"] == TERMINAL and out["backend_url"] == sandbox.url
    assert (data_dir / "backend_enrolment.json").stat().st_mode & 0o777 == 0o600

    with bootstrap(config_path=env["WALLETPOS_CONFIG"], data_dir=data_dir, env={}) as svc:
        fill(svc, 7)
    status = json.loads(run(env, "sync", "--status", "--json").stdout)
    assert status["queue_depth"] == 7 and status["oldest_pending_age_s"] >= 0 and status["last_success_at"] is None

    report = json.loads(run(env, "sync", "--once", "--json").stdout)
    assert report["ok"] and report["accepted"] == 7 and report["queue_after"] == 0 and report["requests"] == 2
    text = run(env, "sync", "--status").stdout
    assert "0 rows waiting" in text and "enrolled" in text and "last sync   20" in text
    assert sandbox.admin.stats(TERMINAL)["stored"] == 7
    # the heartbeat told the backend how the terminal was doing
    assert sandbox.admin.stats(TERMINAL)["heartbeat"]["queue_depth"] == 7


def test_sync_once_reports_failure_with_exit_11(env, sandbox, data_dir):
    run(env, "backend", "enrol", "--token", sandbox.admin.enrolment_token(TERMINAL))
    with bootstrap(config_path=env["WALLETPOS_CONFIG"], data_dir=data_dir, env={}) as svc:
        fill(svc, 3)
    sandbox.admin.faults(rate=1.0, kinds=["retry_after"], retry_after_s=7)
    proc = run(env, "sync", "--once", ok=False)
    assert proc.returncode == 11
    assert "sync FAILED" in proc.stdout and "backend asks to wait 7 s" in proc.stdout
    assert "3 rows still waiting" in proc.stdout
    status = json.loads(run(env, "sync", "--status", "--json").stdout)
    assert status["queue_depth"] == 3 and ("503 busy" in status["last_error"] or "429 busy" in status["last_error"])


def test_kill_9_in_the_middle_of_a_sync_still_ends_exactly_once(env, sandbox, data_dir):
    """The backend commits the first batch, then holds its answer; the terminal process is killed
    with SIGKILL while it waits. Restarted, it sends that batch again (answered `duplicate`) and the
    rest, and the backend ends with every row exactly once."""
    run(env, "backend", "enrol", "--token", sandbox.admin.enrolment_token(TERMINAL))
    with bootstrap(config_path=env["WALLETPOS_CONFIG"], data_dir=data_dir, env={}) as svc:
        ids = fill(svc, 300)
    sandbox.admin.faults(rate=1.0, kinds=["timeout"], timeout_ms=20000, paths=["/v1/transactions/batches"], count=1)
    proc = subprocess.Popen([*WALLETPOS, "sync", "--once"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while sandbox.admin.stats(TERMINAL)["stored"] < 50:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the first batch never reached the backend"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert sandbox.admin.stats(TERMINAL)["stored"] == 50

    status = json.loads(run(env, "sync", "--status", "--json").stdout)
    assert status["queue_depth"] == 300  # the killed process never recorded an answer
    sandbox.admin.faults_off()
    report = json.loads(run(env, "sync", "--once", "--json").stdout)
    assert report["ok"] and report["duplicate"] == 50 and report["accepted"] == 250 and report["queue_after"] == 0
    with bootstrap(config_path=env["WALLETPOS_CONFIG"], data_dir=data_dir, env={}) as svc:
        stats = assert_exactly_once(sandbox, svc, ids)
    assert stats["duplicates_received"] == 50
    assert "journal OK" in run(env, "journal", "verify").stdout
