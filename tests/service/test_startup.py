"""What a start does and does not do: a cashier's terminal comes up without loading the gate's and the
technician's code, and `walletpos tui` opens the reader and the camera only once its first screen is
on the terminal (`Devices(held=True)`, `Service.start_devices`). Both keep the cold start of
scripts/bench_tui.py down; these tests keep them from coming back unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from drivers.simreader import SimReader
from terminal.bootstrap import Devices, bootstrap
from terminal.config import config_from_mapping
from tests.conftest import ROOT

# What `walletpos tui` loads before its first screen: the CLI's parser (every command registered), the
# service on the configured devices (held) and the app with its sign-in screen.
START = """
import json, sys
from terminal.bootstrap import Devices, bootstrap
from terminal.cli import build_parser
from terminal.config import config_from_mapping
from terminal.tui.app import make_app

build_parser()
config = config_from_mapping({"backend": {"enabled": False}})
svc = bootstrap(config, sys.argv[1], env={}, devices=Devices.configured(config, held=True))
make_app(svc, locale="en")
print(json.dumps({"modules": sorted(sys.modules), "states": svc.device_states()}))
svc.close()
"""

LATER = ("terminal.doctor", "terminal.support", "terminal.tapreplay", "drivers.sim", "terminal.transit",
         "terminal.farepay", "terminal.gate", "terminal.core.fares", "terminal.core.gaterules", "drivers.gate",
         "terminal.tui.screens.checkout", "terminal.tui.screens.diagnostics", "drivers.camera", "cv2")


def test_a_cashier_start_loads_no_gate_technician_or_camera_code(tmp_path: Path):
    run = subprocess.run([sys.executable, "-c", START, str(tmp_path / "data")], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    loaded = [m for m in seen["modules"] if m.startswith(LATER)]
    assert loaded == []
    assert "terminal.tui.screens.signin" in seen["modules"] and "terminal.service" in seen["modules"]
    assert seen["states"] == ["starting", "starting"]  # held: not opened yet


def test_held_devices_open_at_start_devices_once(tmp_path: Path):
    opened: list[str] = []
    reader_opened = threading.Event()

    def open_reader() -> SimReader:
        opened.append("reader")
        reader_opened.set()
        return SimReader()

    svc = bootstrap(config_from_mapping({"backend": {"enabled": False}}), tmp_path / "data", env={},
                    devices=Devices(open_reader=open_reader, held=True))
    try:
        assert opened == [] and svc.device_states() == ("starting", "none")
        svc.start_devices()
        svc.start_devices()  # a second call does nothing
        assert reader_opened.wait(10)
    finally:
        svc.close()
    assert opened == ["reader"]


def test_a_service_whose_held_devices_were_never_opened_closes(tmp_path: Path):
    svc = bootstrap(config_from_mapping({"backend": {"enabled": False}}), tmp_path / "data", env={},
                    devices=Devices(open_reader=SimReader, held=True))
    svc.close()
    assert svc.device_states() == ("starting", "none")
