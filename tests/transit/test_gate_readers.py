"""End to end through the real reader stacks: pyscard -> pcscd -> vpcd -> a virtual card, and nfcpy's
udp driver with the card in its own process. A gate taps the card in at station A and out at B (the
right fare), five journeys reach the daily cap, a second read within two seconds is one fare, a
deny-listed card is refused; the gate lane of `walletpos gate` opens the gate through pcscd; and three
`walletpos gate` processes, each its own terminal on its own nfcpy reader, sync their taps to the
sandbox, whose daily charge is what the fare engine computes over all of them."""

from __future__ import annotations

import json
import secrets
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.sim.profiles import PROFILES
from drivers.simgate import SimGate
from terminal.bootstrap import GateDevices, bootstrap
from terminal.core import fares
from terminal.payment import FareResult
from tests.readers.rigs import NfcRig, PcscRig, Rig
from tests.transit.conftest import A_IN, B_IN, B_OUT, METRO, gate_config

PSQ_CTP = 360  # 11.8 km, off-peak at the fixed clock's 10:00 in Shanghai


@pytest.fixture(params=[pytest.param("pcsc", marks=pytest.mark.pcsc), pytest.param("nfc", marks=pytest.mark.nfc)])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "pcsc":
        made: Rig = PcscRig(request.getfixturevalue("pcscd"))
    else:
        made = NfcRig()
    try:
        made.insert("visa")
        yield made
    finally:
        made.close()


def tap(rig: Rig, service, place) -> FareResult:
    """The card lies on the reader: each wait is a new connection to it (pcscd) or a new activation
    (nfcpy), as a new tap is."""
    deadline = time.monotonic() + 10
    session = None
    while session is None:
        assert time.monotonic() < deadline, "the reader did not see the card"
        session = rig.reader.wait_for_card(1.0)
    with session:
        return service.gate_tap(session, place)


@pytest.fixture
def gate(tmp_path: Path, clock):
    svc = bootstrap(gate_config(), tmp_path / "gate", clock=clock, env={})
    yield svc
    svc.close()


def test_tap_in_at_a_and_out_at_b_charges_the_fare(rig, gate, clock):
    assert tap(rig, gate, A_IN).outcome == "go"
    clock.advance(minutes=25)
    out = tap(rig, gate, B_OUT)
    assert (out.outcome, out.direction, out.charged.minor, out.day_total.minor) == ("go", "exit", PSQ_CTP, PSQ_CTP)
    assert out.row.kind == "fare" and out.row.details["fare"]["charges"][0]["from"] == "PSQ"


def test_five_journeys_reach_the_daily_cap(rig, gate, clock):
    charged = []
    for _ in range(5):
        tap(rig, gate, A_IN)
        clock.advance(minutes=20)
        charged.append(tap(rig, gate, B_OUT).charged.minor)
        clock.advance(minutes=35)
    assert charged == [360, 360, 360, 120, 0]


def test_a_second_tap_within_two_seconds_is_one_fare(rig, gate, clock):
    tap(rig, gate, A_IN)
    clock.advance(minutes=20)
    first = tap(rig, gate, B_OUT)
    clock.advance(seconds=1.2)
    second = tap(rig, gate, B_OUT)
    assert first.charged.minor == PSQ_CTP and second.outcome == "same_tap" and second.row is None
    fares_rows = [r for r in gate.require_journal().txns.recent(10) if r.kind == "fare"]
    assert len(fares_rows) == 2 and sum(r.amount.minor for r in fares_rows) == PSQ_CTP


def test_a_deny_listed_card_is_refused(rig, gate, clock):
    token = gate.keys.card_token(PROFILES["visa"].pan)
    gate.require_journal().apply_deny_delta(3, [(token, "lost_or_stolen")], [], now=clock())
    refused = tap(rig, gate, B_IN)
    assert (refused.outcome, refused.sign, refused.reasons) == ("stop", "card_not_accepted", ("deny_listed",))
    assert refused.row.decision == "declined"


@pytest.mark.pcsc
def test_the_gate_lane_opens_the_gate_through_pcscd(pcscd, tmp_path, clock):
    rig = PcscRig(pcscd)
    gate_hw = SimGate()

    class Handle:  # the lane closes what it opened; the rig keeps its reader
        name = rig.reader.name

        def wait_for_card(self, timeout):
            return rig.reader.wait_for_card(timeout)

        def status(self):
            return rig.reader.status()

        def close(self):
            pass

    svc = bootstrap(gate_config(), tmp_path / "lane", clock=clock, env={},
                    gate=GateDevices(Handle, None, gate_hw.connect), gate_place=A_IN)
    seen, events = threading.Event(), []
    svc.on_gate_event(lambda e: (events.append(e), seen.set()))
    try:
        svc.start_gate()
        rig.insert("visa")
        assert seen.wait(15)
        assert events[0].result.outcome == "go" and gate_hw.actions("open") == ["6000"]
        assert events[0].decision_ms < 1000
    finally:
        svc.close()
        rig.close()


# -- three gates, three processes, one back office ----------------------------------------------------------

@pytest.mark.nfc
@pytest.mark.timeout(240)
def test_three_gate_processes_and_the_back_office_agree(tmp_path, cli_env):
    from drivers.sim.nfc_card import free_udp_port, start_nfc_card
    from sandbox import start_sandbox

    key = secrets.token_bytes(32)
    stations = {"G1": ("PSQ", "both"), "G2": ("CTP", "both"), "G3": ("LJZ", "both")}
    with start_sandbox() as sandbox:
        sandbox.admin.set_fare_table(METRO.read_text(encoding="utf-8"))
        gates = {}
        for terminal_id, (station, direction) in stations.items():
            port = free_udp_port()
            data = tmp_path / terminal_id
            data.mkdir(mode=0o700)
            (data / "card_token.key").write_bytes(key)
            (data / "card_token.key").chmod(0o600)
            config = tmp_path / f"{terminal_id}.toml"
            config.write_text(
                f'[terminal]\nid = "{terminal_id}"\nmode = "transit"\n'
                f'[backend]\nurl = "{sandbox.url}"\n[sync]\ninterval_ms = 200\nbackoff_initial_ms = 50\n'
                f'backoff_max_ms = 500\n[reader]\ndevice = "nfc:udp:localhost:{port}"\n[camera]\nsource = "sim:"\n'
                f'[transit]\nfare_table = "{METRO}"\nstation = "{station}"\ndirection = "{direction}"\n'
                f'gate_id = "{terminal_id}-1"\nfirst_rides_offline = 0\n'
                # a route ridden in seconds: a tap 300 ms after the last is no repeat, and no passback
                'same_tap_ms = 200\nanti_passback_seconds = 0\n', encoding="utf-8")
            env = {**cli_env, "WALLETPOS_DATA_DIR": str(data), "WALLETPOS_CONFIG": str(config)}
            enrol = subprocess.run([sys.executable, "-m", "terminal.cli", "backend", "enrol", "--token",
                                    sandbox.admin.enrolment_token(terminal_id)], env=env, capture_output=True,
                                   text=True, timeout=60)
            assert enrol.returncode == 0, enrol.stderr
            gates[terminal_id] = {"env": env, "port": port, "data": data}
        # the three gates, each a `walletpos gate --headless` process with its own nfcpy reader
        for g in gates.values():
            g["proc"] = subprocess.Popen([sys.executable, "-m", "terminal.cli", "gate", "--headless"], env=g["env"],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            route = ["G1", "G2", "G2", "G3", "G3", "G1", "G1", "G2"]  # PSQ>CTP, CTP>LJZ, LJZ>PSQ, PSQ>CTP
            lines = []
            for terminal_id in route:
                g = gates[terminal_id]
                with start_nfc_card("visa", g["port"]) as card:
                    line = read_line(g["proc"], 30)
                    card.remove()
                lines.append(json.loads(line))
                time.sleep(0.3)
            assert [x["outcome"] for x in lines] == ["go"] * len(route), lines
        finally:
            for g in gates.values():
                g["proc"].terminate()
            for g in gates.values():
                _, err = g["proc"].communicate(timeout=30)
                assert g["proc"].returncode in (0, -15), err[-2000:]
        # every fare row reached the back office (the gates synced before they stopped; sync once more)
        taps = []
        token = None
        for g in gates.values():
            sync = subprocess.run([sys.executable, "-m", "terminal.cli", "sync", "--once"], env=g["env"],
                                  capture_output=True, text=True, timeout=60)
            assert sync.returncode == 0, sync.stderr
            from terminal.config import load_config

            svc = bootstrap(load_config(g["env"]["WALLETPOS_CONFIG"]), g["data"], env={})
            try:
                for row in svc.require_journal().txns.rows_since(None):
                    if row.kind == "fare" and row.approved:
                        token = row.card_token
                        at = row.created_at.astimezone(UTC)
                        local = at.astimezone(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
                        taps.append(fares.Tap(row.id, at, local, row.details["station"],
                                              row.details["gate_direction"], row.details.get("concession")))
            finally:
                svc.close()
        assert len(taps) == len(route) and token is not None
        table = fares.parse_fare_table(METRO.read_text(encoding="utf-8"))
        day = fares.service_day(table, taps[0].local)
        now = datetime.now(UTC)
        expected = fares.price_card(table, taps, now=now,
                                    now_local=now.astimezone(ZoneInfo(table.timezone)).replace(tzinfo=None))
        charged = sandbox.admin.transit_card(token, day.isoformat())
        assert charged["daily_charge"] == expected.day(day).total > 0
        assert [(j["from"], j["to"]) for j in charged["journeys"]] == \
            [("PSQ", "CTP"), ("CTP", "LJZ"), ("LJZ", "PSQ"), ("PSQ", "CTP")]
        assert {j["entry_terminal"] for j in charged["journeys"]} == {"G1", "G2", "G3"}


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.strip():
                return line
        if proc.poll() is not None:
            raise AssertionError(f"the gate process ended: {proc.stderr.read() if proc.stderr else ''}")
    raise AssertionError("no tap decided in time")

