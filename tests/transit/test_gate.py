"""A transit gate over a real journal: tap-in/tap-out fares, the daily cap, one fare for a tap read
twice, anti-passback, the deny list, expired cards, the sync age, first-ride risk, wallet codes with a
concession, journey state across restarts, what an edit of the journal file does, two processes on
one data directory, and the gate lane driving the (simulated) gate hardware."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.sim.cards import make_card
from drivers.sim.profiles import PROFILES
from drivers.simgate import SimGate
from drivers.simreader import SimReader
from terminal.bootstrap import GateDevices, bootstrap
from terminal.core import qrpay
from terminal.core.money import Money
from terminal.core.rules import WalletTier
from tests.transit.conftest import A_IN, A_OUT, B_IN, B_OUT, ROOT, gate_config, tap

# the fixed clock starts at 2026-11-23 02:00 UTC: 10:00 in Shanghai, a Monday, off-peak
PSQ_CTP = 400 * 90 // 100  # 11.8 km: 4.00, off-peak 90%


def fare_rows(service):
    return [r for r in sorted(service.require_journal().txns.recent(500), key=lambda r: r.seq) if r.kind == "fare"]


def test_tap_in_at_a_tap_out_at_b_charges_the_fare_and_journals_both(gate_service, clock):
    svc = gate_service()
    first = tap(svc, A_IN)
    assert (first.outcome, first.direction, first.sign, first.charged.minor) == ("go", "entry", "go", 0)
    assert "journey_started" in first.reasons
    clock.advance(minutes=25)
    second = tap(svc, B_OUT)
    assert (second.outcome, second.direction, second.charged.minor, second.day_total.minor) == \
        ("go", "exit", PSQ_CTP, PSQ_CTP)
    rows = fare_rows(svc)
    assert [(r.decision, r.amount.minor, r.details["station"], r.details["direction"], r.details["gate"])
            for r in rows] == [("approved", 0, "PSQ", "entry", "A-01"), ("approved", PSQ_CTP, "CTP", "exit", "B-02")]
    charge = rows[1].details["fare"]["charges"][0]
    assert (charge["from"], charge["to"], charge["fare"], charge["charged"], charge["peak"]) == \
        ("PSQ", "CTP", PSQ_CTP, PSQ_CTP, False)
    assert rows[1].details["fare_table"] == "metro-l1@1" and rows[1].masked_pan.endswith(PROFILES["visa"].pan[-4:])
    assert PROFILES["visa"].pan not in json.dumps([r.to_dict() for r in rows])
    assert svc.require_journal().verify().ok


def test_five_journeys_reach_the_daily_cap(gate_service, clock):
    svc = gate_service()
    charged = []
    for _ in range(5):  # 3.60 each, the next tap-in 35 minutes after (no transfer): 3.60 x3, 1.20 (cap 12.00), 0
        tap(svc, A_IN)
        clock.advance(minutes=20)
        result = tap(svc, B_OUT)
        charged.append(result.charged.minor)
        clock.advance(minutes=35)
    assert charged == [360, 360, 360, 120, 0]
    assert result.day_total.minor == 1200 and "cap_reached" in result.reasons


def test_a_second_tap_within_two_seconds_is_one_tap(gate_service, clock):
    svc = gate_service()
    assert tap(svc, A_IN).outcome == "go"
    clock.advance(seconds=1.5)
    again = tap(svc, A_IN)
    assert again.outcome == "same_tap" and again.sign == "go" and again.row is None
    assert len(fare_rows(svc)) == 1
    clock.advance(seconds=1)  # 2.5 s: a new tap at the same station and direction: passback
    passback = tap(svc, A_IN)
    assert (passback.outcome, passback.sign, passback.reasons) == ("stop", "tap_only_once", ("anti_passback",))
    assert [r.decision for r in fare_rows(svc)] == ["approved", "declined"]
    clock.advance(seconds=301)  # anti_passback_seconds passed: a new journey (the first one incomplete)
    assert tap(svc, A_IN).outcome == "go"


def test_deny_listed_and_expired_cards_are_refused(gate_service, clock):
    svc = gate_service()
    journal = svc.require_journal()
    journal.apply_deny_delta(1, [(svc.keys.card_token(PROFILES["visa"].pan), "lost_or_stolen")], [], now=clock())
    denied = tap(svc, A_IN)
    assert (denied.outcome, denied.sign, denied.reasons) == ("stop", "card_not_accepted", ("deny_listed",))
    expired = tap(svc, A_IN, "expired")
    assert expired.sign == "card_not_accepted" and "card_expired" in expired.reasons
    garbage = tap(svc, A_IN, "garbage")
    assert garbage.outcome == "stop" and garbage.row is None  # unreadable: nobody is known to have tapped
    assert [r.decision for r in fare_rows(svc)] == ["declined", "declined"]


def test_a_gate_offline_for_too_long_sends_passengers_to_staff(gate_service, clock):
    svc = gate_service(transit={"max_hours_since_sync": 24})
    clock.advance(hours=25)
    result = tap(svc, A_IN)
    assert (result.outcome, result.sign, result.reasons) == ("stop", "see_staff", ("sync_too_old",))


def test_an_unknown_card_rides_once_before_the_backend_confirms_it(gate_service, clock):
    svc = gate_service(backend={"enabled": True})
    assert "first_ride" in tap(svc, A_IN).reasons
    clock.advance(minutes=20)
    assert tap(svc, B_OUT).outcome == "go"  # the tap-out is never refused for it
    clock.advance(minutes=20)
    second = tap(svc, B_IN)
    assert (second.outcome, second.sign, second.reasons) == ("stop", "see_staff", ("first_ride_pending",))
    first_row = fare_rows(svc)[0]
    with svc.require_journal().session(now=clock()) as session:  # what the sync worker records on "accepted"
        session.db.execute("UPDATE txn SET sync_state = 'accepted' WHERE id = ?", (first_row.id,))
    clock.advance(minutes=10)
    assert tap(svc, B_IN).outcome == "go"


def test_a_wallet_code_rides_with_its_tier_as_concession(gate_service, clock):
    issuer = Ed25519PrivateKey.generate()
    key = f"k1:{issuer.public_key().public_bytes_raw().hex()}"
    svc = gate_service(qr={"issuer_keys": [key]})

    def code(counter: int) -> str:
        body = qrpay.wallet_code_body(key_id="k1", wallet_id="W-1", tier=WalletTier.REAL_NAME, counter=counter,
                                      issued_at=int(clock().timestamp()), valid_for=60)
        return qrpay.encode_wallet_code(body, issuer.sign(qrpay.signing_input(body)))

    assert svc.gate_code(code(1), A_IN).outcome == "go"
    clock.advance(minutes=20)
    out = svc.gate_code(code(2), B_OUT)
    assert out.outcome == "go" and out.charged.minor == PSQ_CTP * 90 // 100  # real-name wallets pay 90%
    clock.advance(minutes=40)
    used = svc.gate_code(code(2), A_IN)  # a code already used
    assert used.outcome == "stop" and used.reasons == ("code_already_used",)
    assert svc.gate_code("hello", A_IN).sign == "card_not_accepted"


def test_the_journey_survives_a_restart(gate_service, clock, tmp_path):
    first = gate_service(tmp_path / "d")
    tap(first, A_IN)
    first.close()
    clock.advance(minutes=30)
    second = gate_service(tmp_path / "d")
    assert tap(second, B_OUT).charged.minor == PSQ_CTP


@pytest.mark.parametrize("damage", ["edit", "delete", "roll_back"])
def test_an_edited_journey_state_puts_the_journal_on_hold(gate_service, clock, tmp_path, damage):
    """What an attacker with the SQLite file can do to a card's journey state: edit it (its MAC
    fails), delete it (its fare rows are still there), or put back an older copy (it is not the state
    its newest fare row left). Each is found at the next tap of that card: the journal goes on hold
    and the gate sends the passenger to staff."""
    svc = gate_service(tmp_path / "d")
    tap(svc, A_IN)
    path = svc.require_journal().path
    db = sqlite3.connect(path)
    key, value, mac = db.execute("SELECT key, value, mac FROM state WHERE key LIKE 'guard|transit|%'").fetchone()
    db.close()
    clock.advance(minutes=20)
    tap(svc, B_OUT)
    svc.close()
    db = sqlite3.connect(path)
    if damage == "edit":
        db.execute("UPDATE state SET value = replace(value, '\"day_charged\":360', '\"day_charged\":0') "
                   "WHERE key = ?", (key,))
    elif damage == "delete":
        db.execute("DELETE FROM state WHERE key = ?", (key,))
    else:
        db.execute("UPDATE state SET value = ?, mac = ? WHERE key = ?", (value, mac, key))
    db.commit()
    db.close()
    again = gate_service(tmp_path / "d")
    clock.advance(minutes=20)
    result = tap(again, A_IN)
    assert (result.outcome, result.sign) == ("stop", "see_staff")
    assert again.integrity_problem() is not None and "transit journey state" in again.integrity_problem()


def test_two_processes_on_one_data_dir_never_both_charge_a_journey(tmp_path):
    """Two gate processes on one journal tap the same card out at the same moment: the decision and
    the append are one write transaction, so exactly one of them pairs the journey with its tap-in."""
    data = tmp_path / "shared"
    config = tmp_path / "gate.toml"
    config.write_text(f'[terminal]\nmode = "transit"\n[backend]\nenabled = false\n[transit]\nfare_table = '
                      f'"{ROOT / "config" / "fares-metro.toml"}"\nstation = "PSQ"\n', encoding="utf-8")
    script = tmp_path / "tap.py"
    script.write_text(TAP_SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(script), str(config), str(data), *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    entry = run("A-01", "PSQ", "entry", "0")
    out, err = entry.communicate(timeout=60)
    assert json.loads(out)["outcome"] == "go", err
    start = str(time.time() + 2.0)
    racers = [run("B-01", "CTP", "exit", start), run("B-02", "CTP", "exit", start)]
    results = []
    for proc in racers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    paired = [r for r in results if r["breakdown"] and r["breakdown"][0]["kind"] == "journey"]
    assert len(paired) == 1, results
    assert sum(r["charged"] or 0 for r in results) == paired[0]["charged"]


TAP_SCRIPT = """
import json, sys, time
from drivers.sim.cards import make_card
from drivers.simreader import SimReader
from terminal.bootstrap import bootstrap
from terminal.config import load_config
from terminal.transit import GatePlace

config, data, gate, station, direction, start = sys.argv[1:]
svc = bootstrap(load_config(config), data, env={})
reader = SimReader()
reader.tap(make_card("visa"))
session = reader.wait_for_card(1)
_ = svc.fare_table
while time.time() < float(start):
    time.sleep(0.001)
result = svc.gate_tap(session, GatePlace(gate, station, direction))
print(json.dumps(result.to_dict()))
svc.close()
"""


def test_the_gate_lane_reads_decides_and_drives_the_gate(tmp_path, clock):
    """The lane of `walletpos gate`: the reader watched and armed for good, each tap decided, the gate
    opened for a GO and shown red for a STOP, the gate board reopened when it comes back, the status
    file written for `walletpos gate --status`."""
    reader, gate = SimReader(name="lane reader"), SimGate()
    svc = bootstrap(gate_config(), tmp_path / "lane", clock=clock, env={},
                    gate=GateDevices(lambda: reader, None, gate.connect), gate_place=A_IN)
    events = []
    seen = threading.Event()
    svc.on_gate_event(lambda e: (events.append(e), seen.set()))
    try:
        svc.start_gate()
        reader.tap(make_card("visa"))
        assert seen.wait(10)
        assert events[0].result.outcome == "go" and gate.actions("open") == ["6000"]
        assert "green" in gate.actions("indicator")
        seen.clear()
        clock.advance(seconds=10)
        reader.tap(make_card("visa"))
        assert seen.wait(10)
        assert events[1].result.sign == "tap_only_once" and gate.actions("open") == ["6000"]
        assert "red" in gate.actions("indicator") and "on" in gate.actions("alarm")
        # the gate board goes away: the gate still decides, and opens again once the board is back
        gate.unplug()
        seen.clear()
        clock.advance(minutes=10)
        reader.tap(make_card("mastercard"))
        assert seen.wait(10) and events[2].result.outcome == "go"
        gate.plug()
        time.sleep(0.3)
        seen.clear()
        reader.tap(make_card("unionpay"))
        assert seen.wait(10) and events[3].result.outcome == "go"
        assert gate.actions("open") == ["6000", "6000"]
        status = svc.gate_status()
        assert status["running_here"] and status["taps_total"] == 4 and status["decision_ms"]["p99"] > 0
        assert status["devices"]["reader"]["state"] in ("ready", "card_present")
        svc.gate.write_status()
        written = json.loads((tmp_path / "lane" / "gate-status.json").read_text())
        assert written["gate"]["station"] == "PSQ" and written["taps_total"] == 4
    finally:
        svc.close()


def test_gate_status_from_another_process_reads_the_status_file(tmp_path, clock, gate_service):
    svc = gate_service(tmp_path / "st")
    (tmp_path / "st" / "gate-status.json").write_text(json.dumps(
        {"gate": {"id": "A-01", "station": "PSQ", "direction": "entry", "fare_table": "metro-l1@1"},
         "taps_per_minute": 42, "decision_ms": {"p50": 1.0, "p99": 3.0, "samples": 10}, "pid": 1,
         "devices": {"reader": {"state": "ready", "name": "r", "detail": ""}},
         "written_at": datetime(2026, 11, 23, tzinfo=UTC).isoformat()}))
    status = svc.gate_status()
    assert status["running_here"] is False and status["taps_per_minute"] == 42
    assert status["deny_list"] == {"version": 0, "entries": 0, "memory_bytes": 0}


def test_gate_command_status_and_mode_check(tmp_path, cli_env):
    from tests.conftest import WALLETPOS

    config = tmp_path / "g.toml"
    config.write_text(f'[terminal]\nmode = "transit"\n[backend]\nenabled = false\n[transit]\nfare_table = '
                      f'"{ROOT / "config" / "fares-metro.toml"}"\nstation = "PSQ"\n', encoding="utf-8")
    proc = subprocess.run([*WALLETPOS, "--config", str(config), "gate", "--status", "--json"], env=cli_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["gate"]["station"] == "PSQ"
    retail = subprocess.run([*WALLETPOS, "gate", "--headless"], env=cli_env, capture_output=True, text=True,
                            timeout=60)
    assert retail.returncode == 3 and "mode = \"transit\"" in retail.stderr


def test_money_is_integer_minor_units_on_every_fare_row(gate_service, clock):
    svc = gate_service()
    tap(svc, A_IN)
    clock.advance(minutes=20)
    tap(svc, A_OUT)
    for row in fare_rows(svc):
        assert isinstance(row.amount, Money) and isinstance(row.amount.minor, int)
        assert all(isinstance(c["charged"], int) for c in row.details.get("fare", {}).get("charges", []))
