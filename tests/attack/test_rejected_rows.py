"""Finding 2: rows the backend rejects stay money at risk. A person with a shell on an enrolled,
synced terminal throws its history away (deletes the journal files and the anchor file beside them,
and perhaps puts back an old copy of the journal) and takes payments again from sequence number 1.
The backend holds other rows under those numbers and answers `seq_conflict`: the terminal puts its
journal on hold (offline approvals off, the reason in `status`), the rejected rows keep counting as
exposure, and a sync whose rows were rejected does not count as a successful sync (the rules'
`max_hours_since_sync` keeps running). Only a technician writes the rows off
(`walletpos journal resolve-rejected`, PIN, audited) and turns approvals back on
(`walletpos journal resolve`). Real CLI processes, real SQLite, the real sandbox over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from terminal.bootstrap import bootstrap
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts
from terminal.service import Service
from tests.backend.conftest import FAST_BACKEND, FAST_SYNC, TERMINAL
from tests.conftest import ROOT, WALLETPOS

pytestmark = pytest.mark.timeout(180)

JOURNAL_FILES = ("journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm")


class Terminal:
    """`walletpos` on one data directory and config, as an operator or an attacker runs it."""

    def __init__(self, data: Path, config: Path):
        self.data, self.config = data, config

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETPOS_")}
        env.update(WALLETPOS_DATA_DIR=str(self.data), WALLETPOS_CONFIG=str(self.config), PYTHONPATH=str(ROOT))
        proc = subprocess.run([*WALLETPOS, *args], env=env, capture_output=True, text=True, timeout=60, input=stdin)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def json(self, *args: str) -> dict:
        proc = self.run(*args, "--json")
        assert proc.stdout.strip(), proc.stderr
        return json.loads(proc.stdout)

    def service(self) -> Service:
        """The same terminal in this process (the same bootstrap as every command)."""
        return bootstrap(config_path=self.config, data_dir=self.data, env={})

    def taps(self, minor: int, n: int = 3) -> list[tuple[str, str, int | None, tuple[str, ...]]]:
        """n card payments of `minor` by one card: (outcome, auth mode, sequence number, reasons) each."""
        with self.service() as svc:
            out = []
            for _ in range(n):
                result = svc.pay(PaymentRequest(Money(minor, svc.currency), Method.CARD, card_token="tokVisa"),
                                 CardFacts(scheme="visa", card_token="tokVisa", masked_pan="476173******0010"))
                out.append((result.outcome, result.auth_mode, result.row.seq if result.row else None,
                            tuple(result.reasons)))
            svc.housekeeping()
        return out

    def status(self) -> dict:
        """`walletpos status --json`, read in this process (the same `Service.status`)."""
        with self.service() as svc:
            return svc.status()

    def sync_status(self) -> dict:
        with self.service() as svc:
            return svc.sync_status().to_dict()


@pytest.fixture
def terminal(sandbox, tmp_path) -> Terminal:
    """An enrolled terminal whose journal the backend holds: 3 sales synced."""
    settings = {**FAST_BACKEND, "request_timeout_ms": 30000}
    config = tmp_path / "terminal.toml"
    config.write_text("\n".join([
        "[backend]", f'url = "{sandbox.url}"', *(f"{k} = {v}" for k, v in settings.items()), "", "[sync]",
        *(f"{k} = {v}" for k, v in FAST_SYNC.items()), "", "[offline]", "card_daily_count = 100",
        'card_daily_amount = "100000.00"', 'exposure_cap = "100000.00"']) + "\n", encoding="utf-8")
    term = Terminal(tmp_path / "data", config)
    with term.service() as svc:
        svc.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
    shutil.copy2(term.data / "journal.sqlite3", tmp_path / "journal-at-enrolment.sqlite3")  # an attacker's copy
    assert [mode for _, mode, _, _ in term.taps(1000)] == ["offline"] * 3
    with term.service() as svc:
        assert svc.sync_once().accepted == 3
        assert svc.status()["last_sync_at"]
    assert (term.data / "anchor.json").exists()
    return term


def throw_history_away(term: Terminal, *, old_copy: Path | None = None, keys: bool = False) -> None:
    names = [*JOURNAL_FILES, "anchor.json", *(("terminal_signing.key", "card_token.key") if keys else ())]
    for name in names:
        (term.data / name).unlink(missing_ok=True)
    if old_copy is not None:
        shutil.copy2(old_copy, term.data / "journal.sqlite3")


def test_an_old_copy_put_back_is_put_on_hold_at_the_first_sync_and_its_rows_keep_counting(terminal, sandbox,
                                                                                         tmp_path):
    # the attacker knows about the anchor file: deletes it with the journal, and puts back the copy of the
    # journal taken at enrolment (made with this terminal's own keys, so it opens without complaint)
    throw_history_away(terminal, old_copy=tmp_path / "journal-at-enrolment.sqlite3")
    taps = terminal.taps(5000)
    before = terminal.status()
    print(f"\nold journal put back, anchor deleted: 3 x 50.00 -> {[t[:3] for t in taps]}; exposure "
          f"{before['unsynced_exposure']['text']}, last sync {before['last_sync_at']}")
    assert [t[:3] for t in taps] == [("approved", "offline", n) for n in (1, 2, 3)]

    report = terminal.json("sync", "--once")
    status, sync = terminal.status(), terminal.sync_status()
    text = terminal.run("status").stdout
    print(f"sync --once: {report['rejected']} rejected, {report['seq_conflicts']} sequence conflicts; status: "
          f"exposure {status['unsynced_exposure']['text']}, last sync {status['last_sync_at']}, "
          f"approvals: {status['approvals']}")
    assert report["rejected"] == 3 and report["seq_conflicts"] == 3 and report["accepted"] == 0
    again = terminal.run("sync", "--once")  # for a monitoring script: not a healthy sync
    assert again.returncode == 16 and "3 row(s) rejected" in again.stderr and "on hold" in again.stderr
    assert [t["status"] for t in sandbox.admin.transactions(TERMINAL)] == ["accepted"] * 3  # the backend kept its own
    # on hold, and says why, in every place a person looks
    assert status["integrity"]["ok"] is False and "offline approvals disabled" in status["approvals"]
    assert status["integrity"]["problem"] in status["approvals"] and status["integrity"]["problem"] == sync["hold"]
    assert "offline approvals disabled" in text and "150.00" in text
    # the 150.00 is still money at risk; the sync whose rows were rejected was no successful sync
    assert status["unsynced_exposure"]["amount"] == 15000
    assert status["last_sync_at"] == before["last_sync_at"] is None
    assert sync["rejected"] == 3 and sync["last_success_at"] is None

    # a technician writes the rows off (PIN, audited); the hold stays until it is resolved on its own
    with terminal.service() as svc:
        svc.operators.add("tech1", "Tech One", "technician", "4321", now=svc.clock())
    wrong = terminal.run("journal", "resolve-rejected", "1", "2", "3", "--technician", "tech1", "--note", "x",
                         "--pin-stdin", stdin="0000\n")
    assert wrong.returncode == 2 and "wrong pin" in wrong.stderr
    done = terminal.run("journal", "resolve-rejected", "1", "2", "3", "--technician", "tech1",
                        "--note", "support case 77: journal restored by hand", "--pin-stdin", stdin="4321\n")
    after = terminal.status()
    print(f"resolve-rejected by tech1: {done.stdout.strip()}; exposure {after['unsynced_exposure']['text']}, "
          f"approvals: {after['approvals']}")
    assert done.returncode == 0 and "3 rejected row(s) written off by tech1" in done.stdout
    assert after["unsynced_exposure"]["amount"] == 0 and after["integrity"]["ok"] is False
    with terminal.service() as svc:
        audit = svc.require_journal().audit.rows(10)
    written_off = [row for row in audit if row["event"] == "rejected_rows_resolved"]
    assert len(written_off) == 1 and written_off[0]["actor"] == "tech1"
    assert len(written_off[0]["details"]["ids"]) == 3 and "support case 77" in written_off[0]["details"]["note"]
    resolved = terminal.run("journal", "resolve", "--technician", "tech1", "--note", "support case 77",
                            "--pin-stdin", stdin="4321\n")
    assert resolved.returncode == 0 and terminal.status()["approvals"] == "enabled"


def test_a_deleted_journal_and_anchor_get_no_offline_approval_and_the_conflict_is_kept(terminal, sandbox):
    """The keys stay: the terminal knows it ran before, so a missing journal is a hold at the next start.
    Payments go online (the backend approves what it authorised itself); the sync that follows is refused
    for every row and changes neither the hold nor the sync age."""
    throw_history_away(terminal)
    taps = terminal.taps(5000)
    held = terminal.status()
    report = terminal.json("sync", "--once")
    status = terminal.status()
    print(f"\njournal and anchor deleted, keys kept: 3 x 50.00 -> {[t[:2] for t in taps]}; "
          f"after sync --once: {report['rejected']} rejected; exposure {status['unsynced_exposure']['text']}, "
          f"last sync {status['last_sync_at']}; {status['approvals']}")
    assert all(t[:2] == ("approved", "online") and "journal_integrity" in t[3] for t in taps)
    assert held["integrity"]["ok"] is False and "deleted or lost" in held["integrity"]["problem"]
    assert report["rejected"] == 3 and report["seq_conflicts"] == 3
    assert status["integrity"]["ok"] is False and status["last_sync_at"] is None
    assert status["unsynced_exposure"]["amount"] == 0  # online approvals: the backend authorised them itself
    assert sandbox.admin.stats(TERMINAL)["stored"] == 3


def test_with_the_key_files_deleted_too_the_terminal_cannot_sync_and_its_exposure_stays(terminal, sandbox):
    """New keys the backend never enrolled: nothing can be uploaded under them, every offline approval
    stays counted (exposure cap, sync age from the new journal's start), and verify names the cause."""
    throw_history_away(terminal, keys=True)
    taps = terminal.taps(5000)
    sync = terminal.run("sync", "--once")
    status = terminal.status()
    verify = terminal.run("journal", "verify")
    print(f"\njournal, anchor and keys deleted: 3 x 50.00 -> {[t[:2] for t in taps]}; "
          f"sync --once exit {sync.returncode}: {sync.stdout.strip().splitlines()[-2]}; exposure "
          f"{status['unsynced_exposure']['text']}, approvals {status['approvals']}; verify exit {verify.returncode}: "
          f"{verify.stderr.strip()}")
    assert sync.returncode == 11 and "another terminal key" in sync.stdout
    assert status["unsynced_exposure"]["amount"] == sum(5000 for t in taps if t[:2] == ("approved", "offline"))
    assert status["queue"]["pending"] == 3 and status["last_sync_at"] is None
    assert verify.returncode == 5 and "differs from the one enrolled" in verify.stderr
    assert sandbox.admin.stats(TERMINAL)["stored"] == 3  # nothing under the new key reached the backend
