"""`walletpos` as an operator runs it: a real subprocess, a private data directory."""

from __future__ import annotations

import json
import sqlite3
import subprocess

from terminal.bootstrap import bootstrap
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts
from tests.conftest import WALLETPOS


def run(env, *args, ok=True):
    proc = subprocess.run([*WALLETPOS, *args], capture_output=True, text=True, env=env, timeout=60)
    if ok:
        assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def seed(data_dir, n=3):
    svc = bootstrap(config_path=None, data_dir=data_dir, env={})
    try:
        for i in range(n):
            svc.pay(PaymentRequest(Money(1000 + i, svc.currency), Method.CARD, card_token="tokX"),
                    CardFacts(scheme="unionpay", masked_pan="622202******1234"))
    finally:
        svc.close()


def test_version_and_help(cli_env):
    assert run(cli_env, "--version").stdout.strip() == "walletpos 0.1.0"
    text = run(cli_env, "--help").stdout
    for command in ("status", "rules", "journal", "config"):
        assert command in text


def test_status_json(cli_env, data_dir):
    seed(data_dir)
    status = json.loads(run(cli_env, "status", "--json").stdout)
    assert status["data_dir"] == str(data_dir)
    assert status["journal"]["total"] == 3 and status["journal"]["pending_sync"] == 3
    assert status["unsynced_exposure"]["amount"] == 1000 + 1001 + 1002
    assert status["storage"]["ok"] and status["approvals"] == "enabled"
    assert status["config_file"] == "<embedded defaults>"


def test_data_dir_option_wins_over_env(cli_env, tmp_path):
    other = tmp_path / "other"
    status = json.loads(run(cli_env, "status", "--json", "--data-dir", str(other)).stdout)
    assert status["data_dir"] == str(other)
    assert (other / "terminal_signing.key").stat().st_mode & 0o777 == 0o600
    assert (other / "card_token.key").stat().st_mode & 0o777 == 0o600
    assert other.stat().st_mode & 0o777 == 0o700


def test_rules_explain_uses_live_journal_state(cli_env, data_dir):
    seed(data_dir)  # tokX has 30.03 offline today
    out = json.loads(run(cli_env, "rules", "explain", "--amount", "250.00", "--method", "card",
                         "--card-token", "tokX", "--json").stdout)
    assert out["decision"] == "approve_offline"
    assert out["reasons"] == ["offline_fallback", "above_floor_limit"]
    assert out["state"]["card_offline_amount_today"] == 3003
    assert out["state"]["card_offline_count_today"] == 3
    out = json.loads(run(cli_env, "rules", "explain", "--amount", "970.00", "--method", "card",
                         "--card-token", "tokX", "--json").stdout)
    assert out["decision"] == "decline"
    assert "card_daily_amount_exceeded" in out["reasons"]
    text = run(cli_env, "rules", "explain", "--amount", "1000", "--method", "card").stdout
    assert text.startswith("need_cvm: Verify the customer")


def test_rules_explain_bad_amount_is_a_usage_error(cli_env):
    proc = run(cli_env, "rules", "explain", "--amount", "12.345", "--method", "card", ok=False)
    assert proc.returncode == 2
    assert "--amount: '12.345' has 3 decimals; CNY allows at most 2" in proc.stderr


def test_broken_config_exits_3_with_the_key(cli_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[offline]\nmax_payment = 300.0\n')
    proc = run({**cli_env, "WALLETPOS_CONFIG": str(bad)}, "status", ok=False)
    assert proc.returncode == 3
    assert proc.stderr.startswith(f"walletpos: config error in {bad}: [offline] max_payment: floats are not accepted")


def test_deeply_nested_toml_is_a_config_error_not_a_crash(cli_env, tmp_path):
    """tomllib reads nested arrays recursively: 2,000 levels exhaust the stack. That is a bad config
    file (exit 3, one line naming it), not an internal error with a traceback."""
    deep = tmp_path / "deep.toml"
    deep.write_text("[terminal]\nid = " + "[" * 2000 + "\n", encoding="utf-8")
    proc = run(cli_env, "config", "check", "--config", str(deep), ok=False)
    assert proc.returncode == 3, proc.stderr[-500:]
    assert proc.stderr.splitlines() == [f"walletpos: config error in {deep}: not valid TOML: arrays or inline "
                                        "tables are nested too deeply"]


def test_journal_verify_and_tamper(cli_env, data_dir):
    seed(data_dir, 4)
    out = json.loads(run(cli_env, "journal", "verify", "--json").stdout)
    assert out["ok"] and out["rows_checked"] == 4
    db = sqlite3.connect(str(data_dir / "journal.sqlite3"))
    db.execute("UPDATE txn SET amount = 1 WHERE seq = 2")
    db.commit()
    db.close()
    proc = run(cli_env, "journal", "verify", ok=False)
    assert proc.returncode == 5
    assert "journal FAILED: txn row 2: its content does not match its hash" in proc.stderr


def test_journal_export_jsonl(cli_env, data_dir, tmp_path):
    seed(data_dir, 2)
    lines = run(cli_env, "journal", "export", "--since", "1d").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["seq"] for r in rows] == [1, 2]
    assert rows[0]["masked_pan"] == "622202******1234" and rows[0]["sync_state"] == "pending"
    target = tmp_path / "export.jsonl"
    proc = run(cli_env, "journal", "export", "--since", "2020-01-01", "-o", str(target))
    assert "2 transactions written" in proc.stderr and len(target.read_text().splitlines()) == 2
    assert run(cli_env, "journal", "export", "--since", "2999-01-01").stdout == ""
    bad = run(cli_env, "journal", "export", "--since", "yesterday", ok=False)
    assert bad.returncode == 2 and "give a time like 2026-11-20" in bad.stderr


def test_config_defaults_is_valid_and_complete(cli_env, tmp_path):
    text = run(cli_env, "config", "defaults").stdout
    path = tmp_path / "d.toml"
    path.write_text(text)
    assert "config OK" in run(cli_env, "--config", str(path), "config", "check").stdout


def test_journal_archive_keeps_unsent_rows_and_verify_green(cli_env, data_dir, tmp_path):
    from datetime import UTC, datetime, timedelta

    from tests.conftest import FixedClock

    clock = FixedClock(datetime.now(UTC) - timedelta(days=20))
    config = tmp_path / "t.toml"
    config.write_text("[backend]\nenabled = false\n[offline]\ncard_daily_count = 100\n", encoding="utf-8")
    with bootstrap(config_path=config, data_dir=data_dir, clock=clock, env={}) as svc:
        rows = []
        for _ in range(20):  # one payment a day for 20 days
            rows.append(svc.pay(PaymentRequest(Money(1000, svc.currency), Method.CARD, card_token="tokX"),
                                CardFacts(scheme="unionpay", masked_pan="622202******1234")).row)
            clock.advance(days=1)
        journal = svc.require_journal()
        journal.sync.set_sync_results([(r.id, "accepted", None) for r in rows if r.seq != 6], now=clock())
    cli_env = {**cli_env, "WALLETPOS_CONFIG": str(config)}
    refused = run(cli_env, "journal", "archive", "--keep-days", "3", ok=False)
    assert refused.returncode == 2 and "8 to 3650" in refused.stderr
    out = json.loads(run(cli_env, "journal", "archive", "--keep-days", "8", "--json").stdout)
    print(f"\n20 days, row 6 unsent, keep 8 days: {out}")
    assert out["archived"] == 5 and out["through_seq"] == 5 and out["stopped_by"] == "unsent"
    verify = json.loads(run(cli_env, "journal", "verify", "--json").stdout)
    assert verify["ok"] and verify["rows_checked"] == 15 and verify["checks"]["transactions"]["archived_below"] == 5
    exported = [json.loads(line)["seq"] for line in run(cli_env, "journal", "export").stdout.splitlines()]
    assert exported == list(range(6, 21))
    target = tmp_path / "out.jsonl"
    run(cli_env, "journal", "export", "-o", str(target))
    assert target.stat().st_mode & 0o777 == 0o600
