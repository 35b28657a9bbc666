"""The functional core imports no driver, UI, network or storage library (checked in a fresh
interpreter, so nothing imported by other tests can hide a leak); drivers and scripts import no tests."""

from __future__ import annotations

import ast
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


def test_drivers_and_scripts_do_not_import_the_tests():
    """The simulators, the pcscd helper and the benchmarks stand on their own: nothing under drivers/
    or scripts/ imports the `tests` package (at module level or inside a function)."""
    found = []
    for path in sorted([*ROOT.glob("drivers/**/*.py"), *ROOT.glob("scripts/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {name}" for name in names
                      if name == "tests" or name.startswith("tests.")]
    assert found == []


def test_the_pcscd_helper_does_not_load_pytest():
    proc = subprocess.run([sys.executable, "-c", "import sys, drivers.sim.pcscd; print('pytest' in sys.modules)"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
