"""Full disk and read-only data directory: the service refuses to approve (fail closed), says why,
and leaves no half-written row. Real file systems: a tiny tmpfs and a read-only bind mount, each in
a private mount namespace (`unshare -m`) so nothing leaks to the machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCENARIO = HERE / "storage_scenario.py"


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m to mount a real tmpfs")


def run_in_namespace(shell: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["unshare", "-m", "sh", "-ec", shell], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_full_disk_fails_closed_and_recovers(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    out = run_in_namespace(
        f"mount -t tmpfs -o size=2m,mode=0700 tmpfs {data}; {sys.executable} {SCENARIO} full_disk {data}"
    )
    assert all(r["outcome"] == "approved" for r in out["before"])
    failed = [r for r in out["during"] if r["outcome"] != "approved"]
    assert failed, "the disk never filled up"
    first_failure = out["during"].index(failed[0])
    # once the disk is full nothing is approved, and each refusal says why
    assert all(r["outcome"] == "declined" for r in out["during"][first_failure:])
    for r in failed:
        assert r["reasons"] == ["storage_failure"] and not r["journaled"]
        assert "cannot record payments" in r["message"] and "disk is full" in r["message"]
    # every approval shown was journaled; no half-written rows
    approved_during = sum(r["outcome"] == "approved" for r in out["during"])
    assert out["rows_during"] == 3 + approved_during
    assert out["verify_ok"]
    # space is back: approvals resume
    assert out["after"][0]["outcome"] == "approved"
    assert out["total_rows"] == out["rows_during"] + 1


def test_read_only_data_dir_refuses_to_approve(tmp_path):
    data = tmp_path / "data"
    prepared = run_in_namespace(f"{sys.executable} {SCENARIO} read_only {data} prepare")
    assert [r["outcome"] for r in prepared["prepared"]] == ["approved", "approved"]
    out = run_in_namespace(
        f"mount --bind {data} {data}; mount -o remount,ro,bind {data}; "
        f"{sys.executable} {SCENARIO} read_only {data} run"
    )
    assert out["status_storage"]["ok"] is False
    assert "not writable" in out["status_storage"]["problem"]
    assert out["approvals"] == "disabled: the journal cannot record"
    for r in out["results"]:
        assert r["outcome"] == "declined" and r["reasons"] == ["storage_failure"] and not r["journaled"]
