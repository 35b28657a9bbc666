"""The sandbox is a package of the walletpos distribution: its contract file travels with it, the
demo starts it from an installed wheel (outside any source tree), what it imports from the terminal
and what the terminal imports from it are bounded, and its command reads every admin token."""

from __future__ import annotations

import ast
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox import start_sandbox
from sandbox.spec import load_spec, spec_text

ROOT = Path(__file__).resolve().parents[2]
# what the sandbox may use of the terminal: the pure modules that define the contract's bytes, and the
# pure fare engine (terminal.core.fares), so that the back office prices journeys as the gates do
TERMINAL_MODULES_FOR_THE_SANDBOX = {"terminal.wire", "terminal.journal", "terminal.journal.record", "terminal.security",
                                    "terminal.errors", "terminal.core"}


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level) for every import in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, id(node) in top))
    return found


def test_the_package_reads_the_contract_file_it_ships():
    linked = ROOT / "sandbox" / "openapi.yaml"
    assert linked.is_symlink() and linked.resolve() == (ROOT / "docs" / "openapi.yaml").resolve()  # one source
    assert spec_text() == (ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8")
    assert "/v1/payments" in load_spec()["paths"]


def test_the_terminal_and_the_sandbox_import_each_other_only_as_agreed():
    terminal_uses = {str(p.relative_to(ROOT)): [(m, top) for m, top in imports(p) if m.split(".")[0] == "sandbox"]
                     for p in (ROOT / "terminal").rglob("*.py")}
    terminal_uses = {path: found for path, found in terminal_uses.items() if found}
    sandbox_uses = {m for p in (ROOT / "sandbox").rglob("*.py") for m, _ in imports(p)
                    if m.split(".")[0] in ("terminal", "drivers", "tests", "scripts")}
    print(f"\nterminal -> sandbox: {terminal_uses}; sandbox -> terminal: {sorted(sandbox_uses)}")
    assert terminal_uses == {"terminal/demo.py": [("sandbox", False)]}  # the demo only, inside a function
    assert sandbox_uses <= TERMINAL_MODULES_FOR_THE_SANDBOX


def test_the_demo_loads_the_sandbox_only_when_it_starts_and_names_the_extra_without_flask(tmp_path):
    # Flask is made unimportable inside the child process (None in sys.modules): there is no second
    # environment without Flask to run it in
    code = textwrap.dedent("""
        import json, sys
        import terminal.demo as demo
        loaded = sorted(name for name in ("sandbox", "flask") if name in sys.modules)
        sys.modules["flask"] = None
        try:
            demo._sandbox_module()
            refused = None
        except demo.DemoError as exc:
            refused = exc.message
        print(json.dumps({"loaded_with_the_demo": loaded, "refused": refused}))
    """)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert child.returncode == 0, child.stderr
    seen = json.loads(child.stdout)
    print(f"\n{seen}")
    assert seen["loaded_with_the_demo"] == []
    assert "flask" in seen["refused"] and "pip install 'walletpos[sandbox]'" in seen["refused"]


def test_the_admin_command_takes_a_token_that_starts_with_a_dash(tmp_path):
    token = "-" + secrets.token_urlsafe(24)  # what token_urlsafe gives one time in 64
    command = Path(sys.executable).with_name("walletpos-sandbox")
    with start_sandbox(admin_token=token) as running:
        answer = subprocess.run([str(command), "admin", "--url", running.url, "--token", token, "stats"],
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
    print(f"\nwalletpos-sandbox admin --token {token[:4]}... stats: exit {answer.returncode} {answer.stderr[-200:]}")
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["stored"] == 0


# what the demo does to start its sandbox (terminal.demo.Demo._start_sandbox), from an installed wheel
DEMO_START = textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path

    import requests

    import terminal.demo as demo

    sandbox = demo._sandbox_module()
    data = Path(tempfile.mkdtemp(prefix="walletpos-demo-"))
    running = sandbox.start_sandbox(db_path=data / "sandbox" / "backend.sqlite3", port=0, admin_token="t" * 32)
    try:
        session = requests.Session()
        session.trust_env = False
        unsigned = session.get(running.url + "/v1/sealing-key", timeout=10)
        print(json.dumps({"terminal": demo.__file__, "sandbox": sandbox.__file__, "url": running.url,
                          "unsigned": [unsigned.status_code, unsigned.json()["error"]],
                          "stats": running.admin.stats()["stored"]}))
    finally:
        running.stop()
""")


@pytest.mark.timeout(300)
def test_the_demo_starts_the_sandbox_from_an_installed_wheel(tmp_path):
    source = tmp_path / "source"  # the files a wheel is built from, nothing else of the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    (source / "docs").mkdir()
    shutil.copy2(ROOT / "docs" / "openapi.yaml", source / "docs" / "openapi.yaml")
    for package in ("terminal", "drivers", "sandbox"):
        shutil.copytree(ROOT / package, source / package, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels, target, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels),
                            str(source)], capture_output=True, text=True, timeout=180)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = wheels.glob("walletpos-*.whl")
    installed = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    shipped = target / "sandbox" / "openapi.yaml"
    assert not shipped.is_symlink() and shipped.read_text() == (ROOT / "docs" / "openapi.yaml").read_text()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])}
    started = subprocess.run([sys.executable, "-c", DEMO_START], capture_output=True, text=True, timeout=90,
                             cwd=elsewhere, env=env)
    print(f"\nwheel {wheel.name} ({wheel.stat().st_size} bytes); the demo's sandbox from it: "
          f"exit {started.returncode} {started.stdout.strip()[-400:]} {started.stderr.strip()[-600:]}")
    assert started.returncode == 0, started.stderr
    seen = json.loads(started.stdout.strip().splitlines()[-1])
    assert Path(seen["terminal"]).is_relative_to(target) and Path(seen["sandbox"]).is_relative_to(target)
    assert seen["url"].startswith("http://127.0.0.1:")
    assert seen["unsigned"] == [401, "bad_authorization"] and seen["stats"] == 0

