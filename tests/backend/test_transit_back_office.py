"""The transit back office of the sandbox, over HTTP: gates (terminals of their own, sharing the
network's card-token key) upload their fare rows with the sync worker; the back office pairs the taps
across gates and stations, caps network-wide and charges each card once a day. Its daily charge is
what the pure fare engine computes over every gate's taps; a gate's own total is only its view.
A card the wallet declines after an offline ride is on every gate's deny list at their next sync."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.sim.profiles import PROFILES
from terminal.core import fares
from terminal.transit import GatePlace
from tests.transit.conftest import METRO, tap

TOKEN_KEY = secrets.token_bytes(32)


@pytest.fixture
def gates(sandbox, make_service, tmp_path: Path):
    """Three gate terminals (G1 at PSQ, G2 at CTP, G3 at LJZ), enrolled, with the network's key."""
    sandbox.admin.set_fare_table(METRO.read_text(encoding="utf-8"))
    made = {}
    for terminal_id, station in (("G1", "PSQ"), ("G2", "CTP"), ("G3", "LJZ")):
        data = tmp_path / terminal_id
        data.mkdir(mode=0o700)
        (data / "card_token.key").write_bytes(TOKEN_KEY)
        (data / "card_token.key").chmod(0o600)
        svc = make_service(sandbox.url, data_dir=data, use_clock=True,
                           terminal={"id": terminal_id, "mode": "transit"},
                           transit={"fare_table": str(METRO), "station": station, "first_rides_offline": 0})
        svc.enrol_backend(sandbox.admin.enrolment_token(terminal_id))
        made[terminal_id] = svc
    return made


def taps_of(services) -> list[fares.Tap]:
    zone = ZoneInfo("Asia/Shanghai")
    out = []
    for svc in services:
        for row in svc.require_journal().txns.recent(1000):
            if row.kind == "fare" and row.approved:
                at = row.created_at.astimezone(UTC)
                out.append(fares.Tap(row.id, at, at.astimezone(zone).replace(tzinfo=None), row.details["station"],
                                     row.details["gate_direction"], row.details.get("concession")))
    return out


def test_the_back_office_pairs_taps_across_gates_and_caps_network_wide(sandbox, gates, clock):
    g1, g2, g3 = gates["G1"], gates["G2"], gates["G3"]
    plan = [  # (gate, station, direction, minutes after the last tap)
        (g1, "PSQ", "entry", 0), (g2, "CTP", "exit", 20),  # PSQ -> CTP, across two gates
        (g2, "CTP", "entry", 40), (g3, "LJZ", "exit", 15),
        (g3, "LJZ", "entry", 40), (g1, "PSQ", "exit", 10),
        (g1, "PSQ", "entry", 40), (g3, "LJZ", "exit", 10),
        (g3, "LJZ", "entry", 40), (g2, "CTP", "exit", 10),
    ]
    local_totals = {}
    for i, (svc, station, direction, minutes) in enumerate(plan):
        clock.advance(minutes=minutes)
        result = tap(svc, GatePlace(f"{station}-1", station, direction))
        assert result.outcome == "go", (i, result)
        local_totals[svc.config.terminal.id] = result.day_total.minor
    for svc in gates.values():
        report = svc.sync_once()
        assert report.ok and report.uploaded >= 1, report.lines()
    token = g1.keys.card_token(PROFILES["visa"].pan)
    assert token == g2.keys.card_token(PROFILES["visa"].pan)  # the network shares the card-token key
    day = clock().astimezone(ZoneInfo("Asia/Shanghai")).date()
    charged = sandbox.admin.transit_card(token, day.isoformat())
    table = fares.parse_fare_table(METRO.read_text(encoding="utf-8"))
    later = datetime.now(UTC)
    expected = fares.price_card(table, taps_of(gates.values()), now=later,
                                now_local=later.astimezone(ZoneInfo(table.timezone)).replace(tzinfo=None))
    assert charged["daily_charge"] == expected.day(day).total == 1200  # five journeys: the daily cap
    assert [j["kind"] for j in charged["journeys"]] == ["journey"] * 5
    first = charged["journeys"][0]
    assert (first["from"], first["to"], first["entry_terminal"], first["exit_terminal"]) == ("PSQ", "CTP", "G1", "G2")
    assert charged["journeys"][-1]["capped"] == "daily"
    # every gate only saw its own taps: none of them charged the card what the back office does
    assert all(total < 1200 for total in local_totals.values())
    # the terminal side of the contract: a gate asks the back office about the card
    assert g1.transit_journeys(token, day) == charged
    batch = sandbox.admin.transit_charges(day.isoformat())
    assert batch["cards"] == [{"card_token": token, "daily_charge": 1200, "journeys": 5}]


def test_an_incomplete_journey_is_the_maximum_fare_at_the_back_office(sandbox, gates, clock):
    g1 = gates["G1"]
    tap(g1, GatePlace("PSQ-1", "PSQ", "entry"))
    assert g1.sync_once().ok
    token = g1.keys.card_token(PROFILES["visa"].pan)
    day = clock().astimezone(ZoneInfo("Asia/Shanghai")).date()
    charged = sandbox.admin.transit_card(token, day.isoformat())  # the day is long over (the clock is fixed)
    assert [(j["kind"], j["charged"]) for j in charged["journeys"]] == [("incomplete_no_exit", 630)]  # 7.00 off-peak


def test_a_card_declined_after_an_offline_ride_is_denied_at_every_gate(sandbox, gates, clock):
    g1, g2 = gates["G1"], gates["G2"]
    token = g1.keys.card_token(PROFILES["visa"].pan)
    sandbox.admin.out_of_funds(token)
    assert tap(g1, GatePlace("PSQ-1", "PSQ", "entry")).outcome == "go"  # an offline ride
    report = g1.sync_once()
    assert report.declined_after_offline == 1
    assert g2.sync_once().ok  # another gate downloads the deny list
    clock.advance(minutes=30)
    refused = tap(g2, GatePlace("CTP-1", "CTP", "entry"))
    assert (refused.outcome, refused.sign, refused.reasons) == ("stop", "card_not_accepted", ("deny_listed",))
    sandbox.admin.out_of_funds(token, False)  # the debt is paid: the entry goes
    assert g2.sync_once().ok
    clock.advance(minutes=1)
    assert tap(g2, GatePlace("CTP-2", "CTP", "entry")).outcome == "go"


def test_the_back_office_needs_a_fare_table(sandbox, enrolled):
    from terminal.backend import BackendRefused

    with pytest.raises(BackendRefused) as refused:
        enrolled.transit_journeys("a" * 32, datetime(2026, 11, 23).date())
    assert refused.value.status == 409 and refused.value.code == "no_fare_table"
    with pytest.raises(RuntimeError, match="invalid_fare_table"):
        sandbox.admin.set_fare_table("[fares]\nid = 'x'\n")
