"""Several processes starting at the same moment on one new data directory (a gate's lanes and a
technician's command, all started by systemd at boot): each of them opens the same terminal. The
keys appear whole or not at all, and the journal's schema and identity are written in one
transaction, so no process reads half a key file or a schema without its version."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.attack.test_concurrent_caps import env_for, write_config

pytestmark = pytest.mark.timeout(180)

# waits for the start signal after its imports, so the processes open the data directory together
OPEN = """
import os, sys, time
from pathlib import Path
from terminal.bootstrap import bootstrap
data, go = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
svc = bootstrap(data_dir=data)
try:
    print(svc.payments.storage.problem or "open", svc.payments.storage.require_keys().public_key_bytes.hex(),
          svc.require_journal().meta("public_key"), flush=True)
finally:
    svc.close()
"""


@pytest.mark.parametrize("round_", range(3))
def test_six_processes_opening_a_new_data_directory_at_once_open_one_terminal(tmp_path, round_):
    data, go = tmp_path / "data", tmp_path / "go"
    env = env_for(data, write_config(tmp_path / "t.toml"))
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, str(data), str(go)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    time.sleep(0.05)
    go.touch()
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        answers.append(out.split())
    print(f"\nround {round_}: six processes on one new data directory: {[a[0] for a in answers]}")
    assert all(a[0] == "open" for a in answers), answers
    keys = {a[1] for a in answers}
    assert len(keys) == 1 and {a[2] for a in answers} == keys  # one key, and it is the journal's
    assert sorted(p.name for p in data.iterdir() if p.name.endswith(".tmp")) == []
