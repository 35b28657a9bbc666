"""A transit gate over a real journal (SQLite in a temp dir) with the simulated reader and gate:
`gate_service(...)` builds one (config overrides as a mapping), `tap(service, place, profile)` taps a
virtual card (drivers/sim/cards.py) and returns the fare decision."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.sim.cards import make_card
from drivers.simreader import SimReader
from terminal.bootstrap import bootstrap
from terminal.config import config_from_mapping
from terminal.payment import FareResult
from terminal.service import Service
from terminal.transit import GatePlace

ROOT = Path(__file__).resolve().parents[2]
METRO = ROOT / "config" / "fares-metro.toml"
A_IN = GatePlace("A-01", "PSQ", "entry")
A_OUT = GatePlace("A-02", "PSQ", "exit")
B_IN = GatePlace("B-01", "CTP", "entry")
B_OUT = GatePlace("B-02", "CTP", "exit")


def gate_config(**sections: dict[str, Any]) -> Any:
    data: dict[str, dict[str, Any]] = {
        "terminal": {"mode": "transit"},
        "backend": {"enabled": False},
        "transit": {"fare_table": str(METRO), "station": "PSQ", "direction": "entry"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_mapping(data)


@pytest.fixture
def gate_service(tmp_path: Path, clock) -> Iterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(data_dir: Path | None = None, **sections: dict[str, Any]) -> Service:
        svc = bootstrap(gate_config(**sections), data_dir or tmp_path / "gate", clock=clock, env={})
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()


_READER = SimReader()


def tap(service: Service, place: GatePlace, profile: str = "visa", **card: Any) -> FareResult:
    """Tap a virtual card at `place` (through the simulated reader) and decide it."""
    _READER.tap(make_card(profile, **card))
    session = _READER.wait_for_card(1) or _READER.wait_for_card(1)
    assert session is not None
    try:
        return service.gate_tap(session, place)
    finally:
        session.close()
