"""The automatic day close of unattended terminals (`[day_close] auto_at`): real SQLite journals in
real data directories, a fixed clock moved by hand (the terminal's zone is Asia/Shanghai, UTC+8, so
03:30 local is 19:30 UTC the day before), real second processes on the same data directory."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from terminal.bootstrap import GateDevices, bootstrap
from terminal.config import load_config
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.dayclose import AUTO_CLOSER, last_scheduled, next_scheduled
from terminal.errors import ConfigError
from terminal.payment import CardFacts
from tests.conftest import ROOT, FixedClock

SHANGHAI = load_config(env={}).terminal.zone
AT = time(3, 30)
CONFIG = """
[backend]
enabled = false
[offline]
max_hours_since_sync = 336
card_daily_count = 10000
[day_close]
auto_at = "03:30"
"""


def local(text: str) -> datetime:
    """A Shanghai wall-clock time as the UTC moment the terminal's clock gives."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "auto.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def start(config_path: Path, data_dir: Path, clock: FixedClock, **kw):
    return bootstrap(config_path=config_path, data_dir=data_dir, clock=clock, env={}, **kw)


counter = iter(range(1_000_000))


def tap(svc, amount: int = 300):
    token = f"tok{next(counter):05d}"
    result = svc.pay(PaymentRequest(Money(amount, svc.currency), Method.CARD, card_token=token),
                     CardFacts(scheme="unionpay", card_token=token, masked_pan="622202******1234"))
    assert result.approved, result.message
    return result.row


def upkeep(svc) -> None:
    """What the TUI (and, for the gate, the lane) does every few seconds, and the close it starts."""
    svc.housekeeping()
    assert svc.backoffice.wait_auto_close(30)


def z_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "reports").glob("Z*.json")) if (data_dir / "reports").exists() else []


def audit_events(svc, event: str) -> list[dict]:
    return [r for r in svc.require_journal().audit.rows(500) if r["event"] == event]


# -- when ---------------------------------------------------------------------------------------------


def test_the_moment_of_the_close_in_local_time():
    assert last_scheduled(local("2026-11-24 03:30"), AT, SHANGHAI) == local("2026-11-24 03:30")
    assert last_scheduled(local("2026-11-24 03:29:59"), AT, SHANGHAI) == local("2026-11-23 03:30")
    assert last_scheduled(local("2026-11-24 23:59"), AT, SHANGHAI) == local("2026-11-24 03:30")
    assert next_scheduled(local("2026-11-24 03:30"), AT, SHANGHAI) == local("2026-11-25 03:30")
    assert next_scheduled(local("2026-11-24 03:29"), AT, SHANGHAI) == local("2026-11-24 03:30")


def test_auto_at_is_validated_and_off_by_default_on_for_the_shipped_gate(tmp_path):
    assert load_config(env={}).day_close.auto_time is None
    gate = load_config(ROOT / "config" / "transit.toml")
    assert gate.terminal.mode == "transit" and gate.day_close.auto_time == AT
    for bad in ("25:00", "3:30", "03:30:00", "noon", "03:60"):
        path = tmp_path / "bad.toml"
        path.write_text(f'[day_close]\nauto_at = "{bad}"\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=r"\[day_close\] auto_at: .* HH:MM"):
            load_config(path)


# -- once, at the time ----------------------------------------------------------------------------------


def test_closes_once_at_the_time_as_a_supervisor_close_writes_it(config_path, data_dir):
    clock = FixedClock(local("2026-11-23 10:00"))
    with start(config_path, data_dir, clock) as svc:
        upkeep(svc)  # today's 03:30 had nothing before it: no Z
        assert z_files(data_dir) == []
        rows = [tap(svc, 100 + i) for i in range(5)]
        clock.now = local("2026-11-24 03:29:59")
        upkeep(svc)
        assert z_files(data_dir) == []  # not yet
        clock.now = local("2026-11-24 03:30:02")
        upkeep(svc)
        (z_json,) = z_files(data_dir)
        data = json.loads(z_json.read_text())
        assert data["z_number"] == 1 and data["closed_by"] == AUTO_CLOSER and data["operator"] is None
        assert (data["first_seq"], data["last_seq"]) == (rows[0].seq, rows[-1].seq)
        assert data["sales"] == {"count": 5, "amount": sum(100 + i for i in range(5))}
        assert z_json.with_suffix(".txt").read_text().count("Z-REPORT 1") == 1
        closes = audit_events(svc, "day_closed")
        assert len(closes) == 1 and closes[0]["actor"] == AUTO_CLOSER and closes[0]["details"]["automatic"]
        # a minute later, an hour later, the same close asked for again: nothing more
        for later in ("2026-11-24 03:31", "2026-11-24 09:00"):
            clock.now = local(later)
            upkeep(svc)
        assert svc.backoffice.auto_close(AT).outcome == "already_closed"
        assert len(z_files(data_dir)) == 1 and len(audit_events(svc, "day_closed")) == 1
        # the supervisor's close of the same kind of batch writes the same fields
        svc.operators.add("sup1", "Li Na", "supervisor", "2222", now=clock())
        tap(svc)
        _, paths = svc.close_day(operator="sup1")
        assert set(json.loads(paths[0].read_text())) == set(data)
        # and the next day closes again at 03:30, Z 3 after the supervisor's Z 2
        tap(svc)
        clock.now = local("2026-11-25 03:30")
        upkeep(svc)
        assert [json.loads(p.read_text())["z_number"] for p in z_files(data_dir)] == [1, 2, 3]


def test_a_restart_just_after_the_time_does_not_close_again(config_path, data_dir):
    clock = FixedClock(local("2026-11-23 18:00"))
    with start(config_path, data_dir, clock) as svc:
        upkeep(svc)
        tap(svc)
        clock.now = local("2026-11-24 03:30:01")
        upkeep(svc)
    assert len(z_files(data_dir)) == 1
    clock.now = local("2026-11-24 03:30:09")  # systemd restarted the gate
    with start(config_path, data_dir, clock) as svc:
        tap(svc)
        upkeep(svc)
        assert svc.backoffice.auto_close(AT).outcome == "already_closed"
        assert svc.day_report().sales.count == 1  # the tap after the close waits for the next one
    assert len(z_files(data_dir)) == 1


def test_a_terminal_off_at_the_time_closes_the_missed_day_once_when_it_starts(config_path, data_dir):
    clock = FixedClock(local("2026-11-22 20:00"))
    with start(config_path, data_dir, clock) as svc:
        upkeep(svc)
        taps = [tap(svc) for _ in range(3)]
    # off for two nights (the 23rd's and the 24th's 03:30 passed), started again on the 24th at 09:00
    clock.now = local("2026-11-24 09:00")
    with start(config_path, data_dir, clock) as svc:
        upkeep(svc)
        (z_json,) = z_files(data_dir)
        data = json.loads(z_json.read_text())
        assert data["z_number"] == 1 and data["sales"]["count"] == 3
        assert (data["first_seq"], data["last_seq"]) == (taps[0].seq, taps[-1].seq)
        assert audit_events(svc, "day_closed")[0]["details"]["scheduled_for"].startswith("2026-11-23T19:30")
        upkeep(svc)
        clock.advance(hours=1)
        upkeep(svc)
    assert len(z_files(data_dir)) == 1


def test_an_empty_batch_is_not_closed(config_path, data_dir):
    clock = FixedClock(local("2026-11-23 12:00"))
    with start(config_path, data_dir, clock) as svc:
        upkeep(svc)
        tap(svc)
        clock.now = local("2026-11-24 03:30")
        upkeep(svc)
        assert len(z_files(data_dir)) == 1
        clock.now = local("2026-11-25 03:30")  # nothing was recorded the whole day
        upkeep(svc)
        assert len(z_files(data_dir)) == 1 and svc.backoffice.last_close()[1] == 1
        skipped = audit_events(svc, "day_close_skipped")
        assert skipped and skipped[0]["actor"] == AUTO_CLOSER and skipped[0]["details"]["reason"] == "nothing_to_close"
        assert skipped[0]["details"]["scheduled_for"].startswith("2026-11-24T19:30")
        # rows written after the moment only are not the missed day's either
        clock.now = local("2026-11-26 03:30:05")
        tap(svc)
        assert svc.backoffice.auto_close(AT).outcome == "nothing_to_close"
        assert len(z_files(data_dir)) == 1 and svc.day_report().sales.count == 1


# -- two processes, taps during the close ------------------------------------------------------------

SECOND_PROCESS = """
import sys
from datetime import datetime, time
from terminal.bootstrap import bootstrap
moment = datetime.fromisoformat(sys.argv[3])
with bootstrap(config_path=sys.argv[1], data_dir=sys.argv[2], clock=lambda: moment, env={}) as svc:
    print(svc.backoffice.auto_close(time(3, 30)).outcome)
"""


def second_process(config_path: Path, data_dir: Path, moment: datetime) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SECOND_PROCESS, str(config_path), str(data_dir),
                             moment.isoformat()], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcome(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out.strip()


def test_a_second_process_on_the_same_data_directory_does_not_close_twice(config_path, data_dir):
    clock = FixedClock(local("2026-11-23 12:00"))
    with start(config_path, data_dir, clock) as svc:
        upkeep(svc)
        for _ in range(20):
            tap(svc)
        clock.now = local("2026-11-24 03:30:01")
        # while this process holds the close, the other one does not wait and does not close
        with svc.backoffice.closing(wait=False) as held:
            assert held
            assert outcome(second_process(config_path, data_dir, clock.now)) == "busy"
        # both at once, and this one's housekeeping too: one Z
        others = [second_process(config_path, data_dir, clock.now) for _ in range(2)]
        svc.housekeeping()
        results = sorted(outcome(p) for p in others)
        assert svc.backoffice.wait_auto_close(30)
        assert results.count("closed") <= 1
        assert len(z_files(data_dir)) == 1
        assert len(audit_events(svc, "day_closed")) == 1
        assert svc.backoffice.auto_close(AT).outcome == "already_closed"
        assert json.loads(z_files(data_dir)[0].read_text())["sales"]["count"] == 20


class TapsWhileClosing(FixedClock):
    """The clock the terminal reads; whenever the automatic close (in its own thread) reads it, a
    passenger taps at that moment, in another thread, and the close goes on once the tap is stored."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.service = None
        self.during: list = []

    def __call__(self) -> datetime:
        if self.service is not None and threading.current_thread().name == "walletpos-day-close":
            passenger = threading.Thread(target=lambda: self.during.append(tap(self.service)))
            passenger.start()
            passenger.join(30)
        return self.now


def test_a_tap_during_the_close_is_kept_and_lands_in_the_next_batch(config_path, data_dir):
    clock = TapsWhileClosing(local("2026-11-23 21:00"))
    with start(config_path, data_dir, clock) as svc:
        upkeep(svc)
        before = [tap(svc) for _ in range(10)]
        clock.now = local("2026-11-24 03:30:00.5")
        clock.service = svc
        upkeep(svc)
        clock.service = None
        assert len(clock.during) >= 2  # taps stored while the close decided, counted and wrote the Z
        assert all(row.approved for row in clock.during)
        (z_json,) = z_files(data_dir)
        z = json.loads(z_json.read_text())
        assert z["sales"]["count"] == 10 and z["last_seq"] == before[-1].seq
        x = svc.day_report()  # the next batch: every tap made during the close, none lost
        assert x.sales.count == len(clock.during)
        assert (x.first_seq, x.last_seq) == (min(r.seq for r in clock.during), max(r.seq for r in clock.during))
        assert svc.require_journal().head().counts()["total"] == 10 + len(clock.during)


def test_the_gate_closes_from_its_upkeep(tmp_path, data_dir):
    """`walletpos gate`: the lane's upkeep between taps starts the close (in a thread of its own)."""
    path = tmp_path / "gate.toml"
    path.write_text(CONFIG + '[terminal]\nmode = "transit"\n', encoding="utf-8")
    clock = FixedClock(local("2026-11-23 22:00"))
    with bootstrap(config_path=path, data_dir=data_dir, clock=clock, env={}, gate=GateDevices()) as svc:
        assert svc.gate is not None and svc.gate.upkeep is not None
        tap(svc)
        clock.now = local("2026-11-24 03:30:04")
        svc.gate.upkeep()
        assert svc.backoffice.wait_auto_close(30)
        (z_json,) = z_files(data_dir)
        assert json.loads(z_json.read_text())["closed_by"] == AUTO_CLOSER
