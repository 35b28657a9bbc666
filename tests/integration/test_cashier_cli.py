"""The back office from the command line, as subprocesses on a real data directory: a day close that
needs a supervisor and says what is unsynced, PINs that are never read from a missing terminal,
references that say "ambiguous", a camera that is not there, the demo's data directory."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts
from tests.conftest import WALLETPOS, FixedClock


def run(cli_env, *args: str, stdin: str | None = None, devnull: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([*WALLETPOS, *args], input=stdin, stdin=subprocess.DEVNULL if devnull else None,
                          capture_output=True, text=True, env=cli_env, timeout=120)


@pytest.fixture
def terminal_with_sales(data_dir):
    """A terminal (its own data directory) with a supervisor, a cashier and two card sales."""
    from terminal.bootstrap import bootstrap

    svc = bootstrap(config_path=None, data_dir=data_dir, env={})
    svc.operators.add("sup1", "Li Na", "supervisor", "2222", now=svc.clock())
    svc.operators.add("cash1", "Wang Wei", "cashier", "1111", now=svc.clock())
    rows = []
    for minor, token in ((1500, "tokA"), (2500, "tokB")):
        result = svc.pay(PaymentRequest(Money(minor, svc.currency), Method.CARD, card_token=token),
                         CardFacts(scheme="visa", masked_pan="411111******1111"), operator="cash1")
        assert result.approved
        rows.append(result.row)
    svc.close()
    return rows


def test_the_day_is_not_closed_without_a_supervisor(cli_env, data_dir, terminal_with_sales):
    proc = run(cli_env, "report", "--close", "--operator", "nobody")
    assert proc.returncode == 2 and "--close needs a supervisor" in proc.stderr
    proc = run(cli_env, "report", "--close", "--supervisor", "sup1", "--operator", "nobody", "--pin-stdin",
               stdin="2222\n")
    assert proc.returncode == 10 and "no operator with that id" in proc.stderr
    proc = run(cli_env, "report", "--close", "--supervisor", "cash1", "--pin-stdin", stdin="1111\n")
    assert proc.returncode == 10 and "not a supervisor" in proc.stderr
    proc = run(cli_env, "report", "--close", "--supervisor", "sup1", "--pin-stdin", stdin="0000\n")
    assert proc.returncode == 10 and "wrong supervisor PIN" in proc.stderr
    assert not (data_dir / "reports").exists()


def test_a_supervisor_closes_the_day_and_is_named_and_told_what_is_unsynced(cli_env, data_dir, terminal_with_sales):
    proc = run(cli_env, "report", "--close", "--supervisor", "sup1", "--operator", "cash1", "--pin-stdin", "--json",
               stdin="2222\n")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["z_number"] == 1 and out["unsynced"] == {"count": 2, "amount": 4000}
    assert "2 transaction(s) (CNY 40.00) are not sent to the backend yet" in proc.stderr
    assert out["by_cashier"]["cash1"]["sales"] == {"count": 2, "amount": 4000}
    saved = json.loads(next((data_dir / "reports").glob("Z0001-*.json")).read_text())
    assert (saved["closed_by"], saved["operator"]) == ("sup1", "cash1")
    text = next((data_dir / "reports").glob("Z0001-*.txt")).read_text()
    assert "Terminal WPOS0001" in text and "Closed by Li Na (sup1)" in text and "Business day" in text
    # nothing new since: no second, empty Z-report
    proc = run(cli_env, "report", "--close", "--supervisor", "sup1", "--pin-stdin", stdin="2222\n")
    assert proc.returncode == 10 and "nothing was recorded since the last close" in proc.stderr
    assert len(list((data_dir / "reports").glob("Z*.json"))) == 1


def test_a_pin_with_no_terminal_to_type_it_is_a_usage_error_not_a_traceback(cli_env, terminal_with_sales):
    sale = terminal_with_sales[0]
    proc = run(cli_env, "refund", sale.short_ref, "--supervisor", "sup1", devnull=True)
    assert proc.returncode == 2, proc.stderr
    assert "--pin-stdin" in proc.stderr and "Traceback" not in proc.stderr and "EOFError" not in proc.stderr


def test_references_are_the_short_ones_and_an_ambiguous_one_says_so(cli_env, data_dir):
    from terminal.bootstrap import bootstrap

    clock = FixedClock(datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
    svc = bootstrap(config_path=None, data_dir=data_dir, env={}, clock=clock)
    svc.operators.add("sup1", "Li Na", "supervisor", "2222", now=clock())
    first = svc.pay(PaymentRequest(Money(1000, svc.currency), Method.CARD, card_token="tokA"), CardFacts()).row
    clock.advance(days=1)
    second = svc.pay(PaymentRequest(Money(2000, svc.currency), Method.CARD, card_token="tokB"), CardFacts()).row
    svc.close()
    assert first.short_ref == second.short_ref == "0001"
    proc = run(cli_env, "receipt", "0001")
    assert proc.returncode == 2 and "ambiguous" in proc.stderr and "no transaction" not in proc.stderr
    assert "2026-11-20" in proc.stderr and "2026-11-21" in proc.stderr
    proc = run(cli_env, "receipt", "2026-11-21/0001")
    assert proc.returncode == 0 and "Ref #0001 2026-11-21" in proc.stdout and "¥20.00" in proc.stdout


def test_a_camera_that_is_not_there_is_unavailable_and_opencv_stays_quiet(cli_env):
    proc = run(cli_env, "scan", "--source", "7", "--timeout", "2")
    assert proc.returncode == 15, (proc.returncode, proc.stderr)
    assert "camera unavailable" in proc.stderr and "WARN" not in proc.stderr


def test_the_demo_and_the_other_commands_use_the_same_named_data_directory(cli_env, tmp_path):
    """`WALLETPOS_DATA_DIR=X walletpos demo` and `walletpos --data-dir X demo` keep their journal in X
    itself, so `walletpos status` with the same X sees the demo's transactions."""
    from terminal.commands.demo import demo_data_dir
    from terminal.config import config_from_mapping
    from terminal.demo import Demo

    named = tmp_path / "shop"
    assert demo_data_dir(None, {"WALLETPOS_DATA_DIR": str(named)}) == named
    assert demo_data_dir(str(named), {}) == named
    assert demo_data_dir(None, {}).name == "demo"  # nothing named: its own folder in the user data directory
    demo = Demo(demo_data_dir(None, {"WALLETPOS_DATA_DIR": str(named)}), config_from_mapping({}))
    try:
        service = demo.start()
        service.pay_cash(Money(1200, service.currency), Money(2000, service.currency), operator="1001")
    finally:
        demo.close()
    env = {**cli_env, "WALLETPOS_DATA_DIR": str(named)}
    status = json.loads(run(env, "status", "--json").stdout)
    assert status["data_dir"] == str(named) and status["journal"]["total"] == 1
    flagged = json.loads(run(cli_env, "--data-dir", str(named), "status", "--json").stdout)
    assert flagged["journal"]["total"] == 1


def test_the_sandbox_declines_a_wrong_pin(tmp_path):
    """The backend opens the PIN block the pad sealed and checks it against the card's test PIN."""
    from drivers.pinpad import seal_pin
    from terminal.bootstrap import bootstrap
    from terminal.config import config_from_mapping
    from terminal.journal.ids import new_txn_id

    sandbox = pytest.importorskip("sandbox").start_sandbox(in_process=True)
    try:
        svc = bootstrap(config_from_mapping({"backend": {"url": sandbox.url}}), tmp_path / "t", env={})
        try:
            svc.enrol_backend(sandbox.admin.enrolment_token(svc.config.terminal.id))
            key = svc.backend_sealing_key()
            client = svc.backend
            token = "a" * 64
            sandbox.admin.card_pin(token, "4321")

            def ask(pin: str, amount: int = 150000) -> object:
                request = PaymentRequest(Money(150000, svc.currency), Method.CARD, card_token=token,
                                         cvm_performed=True, online_pin=True)
                block = seal_pin(key, pin, {"card_token": token, "amount": amount, "currency": "CNY"})
                return client.authorise(request, new_txn_id(), {"sealed_pin": block}, deadline_ms=5000)

            assert ask("4321").approved
            wrong = ask("1234")
            assert not wrong.approved and wrong.reason == "incorrect_pin"
            moved = ask("4321", amount=100)  # a block sealed for another amount
            assert not moved.approved and moved.reason == "pin_block_mismatch"
        finally:
            svc.close()
    finally:
        sandbox.stop()


@pytest.mark.skipif(sys.platform != "linux", reason="local time zone names")
def test_cli_lines_show_local_time(cli_env, terminal_with_sales):
    proc = run(cli_env, "refund", terminal_with_sales[1].short_ref, "--amount", "5", "--supervisor", "sup1",
               "--pin-stdin", stdin="2222\n")
    assert proc.returncode == 0, proc.stderr
    assert "refund recorded: #0003" in proc.stdout and " CST " in proc.stdout
