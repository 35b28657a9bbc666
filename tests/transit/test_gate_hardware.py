"""Gate hardware: the serial relay board driver over a real pseudo-terminal pair (the test reads the
frames the board would get from the other end), the simulated gate, the spec strings, and the
systemd unit that starts a gate."""

from __future__ import annotations

import configparser
import os
import select
import shutil
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

from drivers.gate import GateHardwareError
from drivers.gates import open_gate
from drivers.serialgate import ALARM, AMBER, BUZZER, GREEN, RED, RELEASE, SerialRelayGate, frame
from drivers.simgate import SimGate
from terminal.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "config" / "walletpos-gate.service"


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    yield master, path
    os.close(master)
    os.close(slave)


def read_frames(master: int, count: int, timeout: float = 3.0) -> list[bytes]:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < 4 * count and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            data += os.read(master, 1024)
    return [data[i:i + 4] for i in range(0, len(data), 4)]


def test_frames_carry_the_relay_state_and_the_checksum():
    assert frame(1, True) == bytes.fromhex("A00101A2")
    assert frame(1, False) == bytes.fromhex("A00100A1")
    assert frame(6, True) == bytes.fromhex("A00601A7")
    with pytest.raises(ValueError):
        frame(9, True)


def test_serial_board_over_a_pseudo_terminal(pty_pair):
    master, path = pty_pair
    gate = SerialRelayGate(path, 9600, pulse_ms=50)
    try:
        # opening leaves the gate in a known state: every relay off
        assert read_frames(master, 6) == [frame(r, False) for r in range(1, 7)]
        gate.open_for_one(6000)
        assert read_frames(master, 1) == [frame(RELEASE, True)]
        assert gate.status().state == "open" and gate.status().opened == 1
        assert read_frames(master, 1) == [frame(RELEASE, False)]  # the pulse ends by itself
        gate.set_indicator("amber")
        assert read_frames(master, 3) == [frame(GREEN, False), frame(RED, False), frame(AMBER, True)]
        gate.alarm(True)
        gate.beep("go")
        assert read_frames(master, 3) == [frame(ALARM, True), frame(BUZZER, True), frame(BUZZER, False)]
        assert gate.status().indicator == "amber" and gate.status().alarm
    finally:
        gate.close()
    assert gate.status().state == "absent"
    with pytest.raises(GateHardwareError):
        gate.open_for_one(1000)


def test_a_board_that_is_not_there():
    with pytest.raises(GateHardwareError, match="cannot be opened"):
        SerialRelayGate("/dev/walletpos-no-such-tty")


def test_gate_specs():
    assert isinstance(open_gate("sim:"), SimGate)
    with pytest.raises(ConfigError):
        open_gate("parallel:/dev/lp0")
    with pytest.raises(GateHardwareError):
        open_gate("serial:/dev/walletpos-no-such-tty@19200")


def test_simulated_gate_records_and_can_be_unplugged():
    gate = SimGate()
    seen = []
    gate.on_change(seen.append)
    gate.open_for_one(5000)
    gate.set_indicator("green")
    gate.passed()
    assert gate.actions("open") == ["5000"] and gate.actions("indicator") == ["green"]
    assert [s.state for s in seen] == ["open", "open", "ready"]
    gate.unplug()
    assert gate.status().state == "absent"
    with pytest.raises(GateHardwareError):
        gate.beep("stop")


# -- the systemd unit -------------------------------------------------------------------------------------

def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_the_unit_starts_a_headless_gate_and_restarts_it():
    u = unit()
    assert set(u.sections()) == {"Unit", "Service", "Install"}
    service = u["Service"]
    assert service["ExecStart"].split()[1:] == ["gate", "--headless"]
    assert Path(service["ExecStart"].split()[0]).is_absolute()
    assert service["Restart"] == "always" and float(service["RestartSec"]) > 0
    assert service["Type"] == "simple" and service["KillSignal"] == "SIGTERM"
    assert "WALLETPOS_CONFIG=" in service["Environment"] or any(
        line.startswith("Environment=WALLETPOS_CONFIG=") for line in UNIT.read_text().splitlines())
    assert u["Unit"]["StartLimitIntervalSec"] == "0"  # never give up restarting a gate
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verifies_the_unit(tmp_path):
    """`systemd-analyze verify` on the unit, with ExecStart pointed at this checkout's walletpos (verify
    checks that the program exists). Skipped, saying why, where systemd-analyze is not installed."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (systemd is not the init system of this machine)")
    program = Path(sys.executable).with_name("walletpos")
    text = UNIT.read_text(encoding="utf-8").replace("/opt/walletpos/.venv/bin/walletpos", str(program))
    copy = tmp_path / "walletpos-gate.service"
    copy.write_text(text, encoding="utf-8")
    proc = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "walletpos-gate.service" not in proc.stderr, proc.stderr
