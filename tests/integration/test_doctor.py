"""`walletpos doctor` on real parts: pcscd with the vpcd reader and a virtual card in it, the
simulated camera showing a code, the sandbox backend over HTTPS with a pinned certificate, real
journal files. A healthy terminal passes every check; each broken part (pcscd stopped, no camera,
the backend down, a wrong certificate pin, the clock 10 minutes off, a damaged journal) gives the
failure where it happens and the next step to take."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.camera import CameraScanner
from drivers.sim.cards import make_card
from drivers.sim.vpcd import VpcdCardServer
from drivers.simcamera import SimulatedCamera
from sandbox import start_sandbox
from terminal.bootstrap import Devices, bootstrap
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.doctor import EXIT_FAILURES, EXIT_HEALTHY, DoctorReport
from terminal.payment import CardFacts
from tests.backend.conftest import TERMINAL, terminal_config
from tests.backend.test_tls import self_signed
from tests.conftest import WALLETPOS

pytestmark = pytest.mark.timeout(120)


def real_now() -> datetime:
    return datetime.now(UTC)


def failed(report: DoctorReport, area: str, name: str, step: str) -> None:
    """`area`/`name` failed with the next step `doctor.step.<step>`, in words."""
    check = report.find(area, name)
    assert check is not None, [f"{c.area}.{c.name}" for c in report.checks]
    assert check.status == "fail", check
    assert check.step_key == f"doctor.step.{step}", check
    assert check.next_step and check.figure, check
    assert report.exit_code == EXIT_FAILURES


@pytest.fixture(scope="module")
def https_backend(tmp_path_factory) -> Iterator[tuple]:
    directory = tmp_path_factory.mktemp("doctor-tls")
    cert, key, pin = self_signed(directory, "server", days=365)  # not about to expire: the tls check passes
    _, _, other_pin = self_signed(directory, "other", days=365)
    sandbox = start_sandbox(certfile=str(cert), keyfile=str(key))
    yield sandbox, cert, pin, other_pin
    sandbox.stop()


def wait_for_reader(reader, state: str, *, present: bool, timeout: float = 3.0) -> None:
    """pcscd notices a card coming or going at its next presence poll of vpcd (every 400 ms)."""
    deadline = time.monotonic() + timeout
    while (reader.status().state == state) != present and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def card_on_reader(pcscd) -> Iterator[VpcdCardServer]:
    from drivers.pcsc import PcscReader

    server = VpcdCardServer(port=pcscd.vpcd_port)
    watcher = PcscReader(pcscd.reader, share="shared")
    server.insert(make_card("visa"))
    wait_for_reader(watcher, "card_present", present=True)
    yield server
    server.close()
    wait_for_reader(watcher, "card_present", present=False)  # the next test starts with an empty reader
    watcher.close()


@pytest.mark.pcsc
def test_a_healthy_terminal_passes_every_check(pcscd, card_on_reader, https_backend, tmp_path):
    sandbox, cert, pin, _ = https_backend
    sandbox.admin.reset()
    camera = SimulatedCamera()
    camera.show("https://wallet.example/pay/0001")  # a code in view, so the decode rate is measured
    config = terminal_config(sandbox.url, backend={"ca_file": str(cert), "pin_sha256": [pin],
                                                   "online_auth_deadline_ms": 3000},
                             reader={"device": f"pcsc:{pcscd.reader}"})
    with bootstrap(config, tmp_path / "terminal",
                   devices=Devices(open_scanner=lambda: CameraScanner(camera))) as svc:
        svc.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
        svc.pay(PaymentRequest(Money(1200, svc.currency), Method.CARD, card_token="tokA"),
                CardFacts(scheme="visa", masked_pan="476173******0010", card_token="tokA"))
        assert svc.sync_once().ok
        report = svc.doctor()
    not_passed = [(c.area, c.name, c.status, c.figure, c.detail) for c in report.checks if c.status != "pass"]
    assert not_passed == []
    assert report.exit_code == EXIT_HEALTHY
    names = {(c.area, c.name) for c in report.checks}
    assert {("system", "pcscd"), ("reader", "card"), ("reader", "select"), ("camera", "decode"), ("backend", "pin"),
            ("backend", "latency"), ("clock", "skew"), ("journal", "integrity"), ("queue", "queue"),
            ("limits", "limits")} <= names
    card = report.find("reader", "card")
    assert card.measured["kind"] == "contactless_iso14443_4"
    assert card.measured["atr"] == make_card("visa").atr.hex().upper()
    assert report.find("reader", "select").measured["sw"] == "9000"
    assert report.find("camera", "decode").measured["decoded"] > 0
    latency = report.find("backend", "latency").measured
    assert latency["requests"] == 5 and latency["p50_ms"] <= latency["p95_ms"]
    assert abs(report.find("clock", "skew").measured["skew_s"]) < 10
    assert report.find("journal", "integrity").measured["rows_checked"] == 1
    assert all(c.ms >= 0 for c in report.checks) and report.total_ms > 0


@pytest.mark.pcsc
def test_pcscd_stopped(pcscd, tmp_path):
    if not pcscd.owned:
        pytest.skip("this pcscd was not started by the tests; it is not stopped here")
    config = terminal_config("http://127.0.0.1:1", reader={"device": f"pcsc:{pcscd.reader}"})
    with bootstrap(config, tmp_path / "terminal") as svc:
        pcscd.stop()
        try:
            report = svc.doctor(["system", "reader"])
        finally:
            pcscd.start()
    failed(report, "system", "pcscd", "start_pcscd")
    assert report.find("system", "pcscd").figure == "not running"
    failed(report, "reader", "reader", "start_pcscd")


def test_no_camera(tmp_path):
    config = terminal_config("http://127.0.0.1:1", camera={"source": "/dev/video57"})
    with bootstrap(config, tmp_path / "terminal") as svc:
        report = svc.doctor(["camera"])
    failed(report, "camera", "camera", "camera_open")
    assert "/dev/video57" in report.find("camera", "camera").figure


def test_backend_down(tmp_path):
    sandbox = start_sandbox()
    url = sandbox.url
    sandbox.stop()  # nothing listens on its port any more
    with bootstrap(terminal_config(url), tmp_path / "terminal") as svc:
        report = svc.doctor(["backend", "clock"])
    failed(report, "backend", "tcp", "backend_local_down")
    assert report.find("backend", "dns").status == "pass"
    assert [report.find("backend", n).status for n in ("enrolment", "latency")] == ["skip", "skip"]
    assert report.find("clock", "skew").status == "skip"


def test_a_certificate_about_to_expire_is_a_warning(tmp_path):
    cert, key, pin = self_signed(tmp_path, "short", days=3)
    sandbox = start_sandbox(certfile=str(cert), keyfile=str(key))
    try:
        config = terminal_config(sandbox.url, backend={"ca_file": str(cert), "pin_sha256": [pin]})
        with bootstrap(config, tmp_path / "terminal") as svc:
            report = svc.doctor(["backend"])
    finally:
        sandbox.stop()
    tls = report.find("backend", "tls")
    assert tls.status == "warn" and tls.step_key == "doctor.step.cert_expiring" and tls.measured["days_left"] <= 3
    assert report.find("backend", "pin").status == "pass"


def test_wrong_certificate_pin(https_backend, tmp_path):
    sandbox, cert, pin, other_pin = https_backend
    sandbox.admin.reset()
    config = terminal_config(sandbox.url, backend={"ca_file": str(cert), "pin_sha256": [other_pin]})
    with bootstrap(config, tmp_path / "terminal") as svc:
        report = svc.doctor(["backend", "clock"])
    failed(report, "backend", "pin", "pin_mismatch")
    assert report.find("backend", "tls").status == "pass"
    assert report.find("backend", "pin").measured["spki_sha256"] == pin
    assert report.find("backend", "latency").status == "skip"


def test_clock_ten_minutes_off(https_backend, tmp_path):
    sandbox, cert, pin, _ = https_backend
    sandbox.admin.reset()
    config = terminal_config(sandbox.url, backend={"ca_file": str(cert), "pin_sha256": [pin]})
    with bootstrap(config, tmp_path / "terminal", clock=lambda: real_now() + timedelta(minutes=10)) as svc:
        svc.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
        report = svc.doctor(["backend", "clock"])
    failed(report, "clock", "skew", "set_clock")
    skew = report.find("clock", "skew")
    assert 595 <= skew.measured["skew_s"] <= 605 and "ahead of the backend" in skew.figure
    assert report.find("backend", "latency").status == "pass"


def test_damaged_journal(tmp_path, clock):
    data_dir = tmp_path / "terminal"
    with bootstrap(terminal_config("http://127.0.0.1:1"), data_dir, clock=clock) as svc:
        for minor in (1000, 2000, 3000):
            svc.pay(PaymentRequest(Money(minor, svc.currency), Method.CARD, card_token="tokA"),
                    CardFacts(scheme="visa", card_token="tokA"))
        svc.housekeeping()
        path = svc.journal_path
    with sqlite3.connect(str(path), isolation_level=None) as raw:
        raw.execute("UPDATE txn SET amount = 1 WHERE seq = 2")
    raw.close()
    with bootstrap(terminal_config("http://127.0.0.1:1"), data_dir, clock=clock) as svc:
        report = svc.doctor(["journal"])
    failed(report, "journal", "integrity", "journal_damaged")
    integrity = report.find("journal", "integrity")
    assert integrity.measured["first_bad_seq"] == 2 and "txn row 2" in integrity.figure
    assert integrity.measured["checkpoint_seq"] == 3  # what the last signed checkpoint vouched for


def test_the_command_prints_each_check_and_exits_for_monitoring(cli_env: dict[str, str], tmp_path: Path):
    """`walletpos doctor --json`: each check with its time; exit 21 for a failure (the backend of the
    embedded defaults does not run here)."""
    run = subprocess.run([*WALLETPOS, "doctor", "--json", "--area", "backend", "--area", "journal",
                          "--area", "limits"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == EXIT_FAILURES, run.stderr
    report = json.loads(run.stdout)
    assert report["exit_code"] == EXIT_FAILURES and report["status"] == "fail"
    assert {c["area"] for c in report["checks"]} == {"backend", "journal", "limits"}
    tcp = next(c for c in report["checks"] if c["name"] == "tcp")
    assert tcp["status"] == "fail" and tcp["next_step"].startswith("start the backend on this machine")
    assert all(isinstance(c["ms"], float | int) for c in report["checks"])
    text = subprocess.run([*WALLETPOS, "doctor", "--area", "journal", "--area", "limits"], env=cli_env,
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == EXIT_HEALTHY, text.stdout + text.stderr
    assert "[✓] journal  integrity" in text.stdout and "(exit 0)" in text.stdout


def test_status_names_reader_camera_and_backend(cli_env: dict[str, str]):
    run = subprocess.run([*WALLETPOS, "status", "--json"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    status = json.loads(run.stdout)
    assert status["devices"]["reader"]["configured"] == "sim:" and status["devices"]["camera"]["configured"] == "sim:"
    assert status["backend"] == {**status["backend"], "enabled": True, "url": "http://127.0.0.1:8765",
                                 "enrolled": False}
    assert "walletpos backend enrol" in status["backend"]["problem"]
    text = subprocess.run([*WALLETPOS, "status"], env=cli_env, capture_output=True, text=True, timeout=60).stdout
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert lines["reader"].startswith("reader      sim:") and lines["camera"].startswith("camera      sim:")
    assert "http://127.0.0.1:8765  NOT ENROLLED" in lines["backend"]


def test_an_unknown_area_is_a_usage_error_that_names_the_areas(cli_env: dict[str, str]):
    """The areas are checked when the command runs (building the parser does not load the doctor):
    an unknown one exits 2 and names the known ones, and the help names every area there is."""
    from terminal.doctor import AREAS

    run = subprocess.run([*WALLETPOS, "doctor", "--area", "journal", "--area", "printer"], env=cli_env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    assert "printer" in run.stderr and all(area in run.stderr for area in AREAS)
    helped = subprocess.run([*WALLETPOS, "doctor", "--help"], env=cli_env, capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0 and all(area in " ".join(helped.stdout.split()) for area in AREAS)
