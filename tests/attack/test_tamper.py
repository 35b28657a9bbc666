"""Findings 2, 3, 4 and 7: a person with a shell edits, deletes, truncates or replaces the journal and
its keys. What decisions read is authenticated; damage is found by `journal verify` (read-only, exit
5, every time) and, where it matters for a decision, puts the journal on hold: offline approvals stop
until a technician resolves it (audited). Real files, real SQLite, the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from terminal.bootstrap import bootstrap
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts
from terminal.security import SIGNING_KEY_FILE, load_or_create_keys
from tests.conftest import ROOT, WALLETPOS

pytestmark = pytest.mark.timeout(180)


def cli(data: Path, *args: str, config: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETPOS_")}
    env.update(WALLETPOS_DATA_DIR=str(data), PYTHONPATH=str(ROOT))
    if config is not None:
        env["WALLETPOS_CONFIG"] = str(config)
    proc = subprocess.run([*WALLETPOS, *args], env=env, capture_output=True, text=True, timeout=60, input=stdin)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def verify(data: Path) -> tuple[int, dict]:
    proc = cli(data, "journal", "verify", "--json")
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def sql(data: Path, *statements: str) -> None:
    db = sqlite3.connect(data / "journal.sqlite3")
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def files(data: Path) -> dict[str, bytes]:
    """Every file of the data dir except SQLite's shared-memory index and an empty write-ahead log,
    which any reader of a WAL database may create."""
    return {p.name: p.read_bytes() for p in data.iterdir()
            if p.is_file() and not p.name.endswith("-shm") and not (p.name.endswith("-wal") and not p.stat().st_size)}


def pay(svc, minor: int = 1000, token: str = "tokA"):
    return svc.pay(PaymentRequest(Money(minor, svc.currency), Method.CARD, card_token=token),
                   CardFacts(scheme="visa", card_token=token, masked_pan="476173******0010"))


def terminal_with_rows(data: Path, clock, n: int = 12, token: str = "tokA") -> None:
    with bootstrap(data_dir=data, clock=clock, env={}) as svc:
        for _ in range(n):
            pay(svc, token=token)
        svc.housekeeping()  # rows signed, a checkpoint and the anchor file written


@pytest.mark.parametrize(("damage", "statements"), [
    ("rows deleted from the end", ["DELETE FROM txn WHERE seq >= 8"]),
    ("rows deleted from the end with the journal's state", ["DELETE FROM txn WHERE seq >= 8",
                                                            "DELETE FROM state WHERE key = 'head'"]),
    ("a decision edited", ["UPDATE txn SET decision = 'declined' WHERE seq = 5"]),
    ("a sync state edited", ["UPDATE txn SET sync_state = 'accepted' WHERE seq = 3"]),
    ("a signature that is not hex", ["UPDATE txn SET signature = 'zz-not-a-signature' WHERE seq = 2"]),
    ("an unknown currency", ["UPDATE txn SET currency = 'XQQ' WHERE seq = 4"]),
])
def test_verify_reports_damage_with_exit_5_every_time_and_never_writes(tmp_path, clock, damage, statements):
    data = tmp_path / "data"
    terminal_with_rows(data, clock)
    sql(data, *statements)
    before = files(data)
    runs = [verify(data) for _ in range(3)]
    after = files(data)
    print(f"\n{damage}: verify x3 -> exit codes {[code for code, _ in runs]}: {runs[0][1].get('problem')}")
    assert all(code == 5 and not out["ok"] for code, out in runs)
    assert before == after  # verify wrote nothing: its finding cannot erase itself


@pytest.mark.parametrize("damage", ["truncated to 0 bytes", "deleted", "truncated by 100 bytes",
                                    "a page overwritten", "key file replaced and every row re-signed"])
def test_a_journal_destroyed_or_rewritten_with_a_new_key_fails_verify(tmp_path, clock, damage):
    data = tmp_path / "data"
    terminal_with_rows(data, clock)
    path = data / "journal.sqlite3"
    for wal in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        wal.unlink(missing_ok=True)
    if damage == "truncated to 0 bytes":
        path.write_bytes(b"")
    elif damage == "deleted":
        path.unlink()
    elif damage == "truncated by 100 bytes":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "a page overwritten":
        raw = bytearray(path.read_bytes())
        raw[4096 * 2:4096 * 2 + 512] = os.urandom(512)
        path.write_bytes(bytes(raw))
    else:  # the attacker's own key, and every row re-signed with the product's own functions
        (data / SIGNING_KEY_FILE).unlink()
        keys = load_or_create_keys(data)
        db = sqlite3.connect(path)
        db.executemany("UPDATE txn SET signature = ? WHERE seq = ?",
                       [(keys.sign(h), s) for s, h in db.execute("SELECT seq, row_hash FROM txn").fetchall()])
        db.execute("UPDATE meta SET value = ? WHERE key = 'public_key'", (keys.public_key_bytes.hex(),))
        db.commit()
        db.close()
    code, out = verify(data)
    print(f"\njournal {damage}: verify exit {code}: {out.get('problem')}")
    assert code == 5 and not out["ok"]


def test_a_deleted_journal_is_put_on_hold_when_the_terminal_starts_again(tmp_path, clock):
    data = tmp_path / "data"
    terminal_with_rows(data, clock)
    for name in ("journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm"):
        (data / name).unlink(missing_ok=True)
    with bootstrap(data_dir=data, clock=clock, env={}) as svc:
        result = pay(svc, 5000, "tokNew")
        status = svc.status()
    print(f"\njournal deleted, terminal started again: payment {result.outcome} {list(result.reasons)}; "
          f"status: {status['approvals']}")
    assert not result.approved and "journal_integrity" in result.reasons
    assert status["integrity"]["ok"] is False and "disabled" in status["approvals"]


def test_an_edited_decision_or_sync_state_or_deny_list_changes_no_decision(tmp_path, clock):
    """The next tap reads the authenticated per-card totals, exposure and deny list, not the rows."""
    data = tmp_path / "data"
    config = tmp_path / "t.toml"
    config.write_text('[backend]\nenabled = false\n[offline]\ncard_daily_count = 3\nexposure_cap = "40.00"\n')
    with bootstrap(config_path=config, data_dir=data, clock=clock, env={}) as svc:
        outcomes = [pay(svc).outcome for _ in range(4)]
        svc.require_journal().apply_deny_delta(1, [("tokDenied", "lost_card")], [], now=clock())
        assert outcomes == ["approved", "approved", "approved", "declined"]
        exposure = svc.status()["unsynced_exposure"]["amount"]
    sql(data, "UPDATE txn SET decision = 'declined' WHERE decision = 'approved'",
        "UPDATE txn SET sync_state = 'accepted'")
    with bootstrap(config_path=config, data_dir=data, clock=clock, env={}) as svc:
        again = pay(svc)
        assert svc.status()["unsynced_exposure"]["amount"] == exposure
    print(f"\ndecisions and sync states edited by hand: next tap {again.outcome} {list(again.reasons)}, "
          f"exposure still {exposure}")
    assert not again.approved and "card_daily_count_exceeded" in again.reasons
    sql(data, "DELETE FROM deny_list")
    with bootstrap(config_path=config, data_dir=data, clock=clock, env={}) as svc:
        denied = pay(svc, token="tokDenied")
        status = svc.status()
    print(f"deny-list entry deleted by hand: the card's tap {denied.outcome} {list(denied.reasons)}; "
          f"{status['approvals']}")
    assert not denied.approved and "journal_integrity" in denied.reasons
    assert verify(data)[0] == 5


def test_a_hold_is_resolved_only_by_a_technician_and_leaves_an_audit_row(tmp_path, clock):
    data = tmp_path / "data"
    terminal_with_rows(data, clock)
    sql(data, "DELETE FROM txn WHERE seq >= 10")
    with bootstrap(data_dir=data, clock=clock, env={}) as svc:
        assert not pay(svc).approved
        svc.operators.add("tech1", "Tech One", "technician", "4321", now=clock())
        svc.operators.add("cash1", "Cash One", "cashier", "1111", now=clock())
    refused = cli(data, "journal", "resolve", "--technician", "cash1", "--note", "x", "--pin-stdin", stdin="1111\n")
    assert refused.returncode == 2 and "not a technician" in refused.stderr
    done = cli(data, "journal", "resolve", "--technician", "tech1", "--note", "checked with support case 42",
               "--pin-stdin", stdin="4321\n")
    assert done.returncode == 0, done.stderr
    with bootstrap(data_dir=data, clock=clock, env={}) as svc:
        after = pay(svc, token="tokAfter")
        audit = svc.require_journal().audit.rows(5)
    print(f"\nhold resolved by a technician: next payment {after.outcome}; audit: {audit[0]['event']}")
    assert after.approved
    assert any(row["event"] == "integrity_hold_resolved" and row["actor"] == "tech1" for row in audit)
    code, report = verify(data)
    resolved = report["checks"]["resolved_holds"]
    print(f"verify after the resolution: exit {code}; on record: {resolved[0]}")
    assert code == 0 and resolved[0]["actor"] == "tech1" and "rows 10 to 12" in resolved[0]["hold"]
    assert resolved[0]["note"] == "checked with support case 42"


def test_a_technicians_read_only_copy_can_be_verified(tmp_path, clock):
    data = tmp_path / "data"
    terminal_with_rows(data, clock)
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    for p in copy.iterdir():
        p.chmod(0o400)
    copy.chmod(0o500)
    try:
        code, out = verify(copy)
        print(f"\nread-only copy: verify exit {code}, {out.get('rows_checked')} rows checked")
        assert code == 0 and out["ok"] and out["rows_checked"] == 12
    finally:
        copy.chmod(0o700)

