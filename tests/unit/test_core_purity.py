"""The functional core imports no driver, UI, network or storage library (checked in a fresh
interpreter, so nothing imported by other tests can hide a leak)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import terminal.core

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ["textual", "cv2", "smartcard", "nfc", "requests", "sqlite3", "socket", "threading",
             "zxingcpp", "pyzbar", "numpy", "urllib3", "http.client", "asyncio"]


def test_core_loads_no_io_libraries():
    modules = [m.name for m in pkgutil.walk_packages(terminal.core.__path__, "terminal.core.")]
    assert "terminal.core.rules" in modules and "terminal.core.qrpay.wallet" in modules
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(n for n in {FORBIDDEN!r} if n in sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [], f"the core pulled in IO libraries: {proc.stdout}"
