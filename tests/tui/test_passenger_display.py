"""Snapshot tests of the gate's passenger display (terminal/gate/display.py), in English and Chinese:
waiting, GO at a tap-in, GO at a tap-out with the fare and today's total, STOP "tap only once", and
"see staff". The decisions shown are real ones (a gate over a real journal, a virtual card); the
display is told of them as the gate lane tells it. Fixed clock, no timers back to idle."""

from __future__ import annotations

import pytest

from terminal.bootstrap import bootstrap
from terminal.gate.display import PassengerDisplay, big
from terminal.gate.lane import GateEvent
from tests.transit.conftest import A_IN, B_OUT, gate_config, tap

SIZES = {"en": (80, 24), "zh-CN": (100, 30)}


@pytest.fixture
def gate_service(tmp_path, clock):
    made = []

    def make():
        made.append(bootstrap(gate_config(), tmp_path / f"gate{len(made)}", clock=clock, env={}))
        return made[-1]

    yield make
    for svc in made:
        svc.close()


def scenario(name: str, service, clock):
    """The decided tap the display shows for scenario `name` (None: waiting)."""
    if name == "idle":
        return None
    first = tap(service, A_IN)
    if name == "go_entry":
        return GateEvent(first, clock(), "card", 4.2, A_IN)
    if name == "stop_passback":
        clock.advance(seconds=30)
        return GateEvent(tap(service, A_IN), clock(), "card", 4.2, A_IN)
    clock.advance(minutes=20)
    out = tap(service, B_OUT)
    if name == "go_exit":
        return GateEvent(out, clock(), "card", 4.2, B_OUT)
    clock.advance(hours=100)  # the gate has not synced for days
    return GateEvent(tap(service, A_IN), clock(), "card", 4.2, A_IN)


@pytest.mark.parametrize("locale", list(SIZES))
@pytest.mark.parametrize("name", ["idle", "go_entry", "go_exit", "stop_passback", "see_staff"])
def test_passenger_display(snap_compare, gate_service, clock, name, locale):
    service = gate_service()
    event = scenario(name, service, clock)
    table = service.fare_table
    app = PassengerDisplay(service, locale=locale, place=A_IN, subscribe=False, idle_after={},
                           station_name=lambda sid: table.stations[sid].name)

    async def run_before(pilot) -> None:
        if event is not None:
            pilot.app.show(event)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZES[locale], run_before=run_before)


def test_the_display_says_what_was_decided(gate_service, clock):
    """What the snapshots show, asserted in words (a snapshot can be accepted wrong)."""
    service = gate_service()
    event = scenario("go_exit", service, clock)
    assert event.result.sign == "go" and event.result.charged.minor == 360
    app = PassengerDisplay(service, locale="en", place=A_IN, subscribe=False, idle_after={})

    async def check() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            app.show(event)
            await pilot.pause()
            text = " ".join(str(w.render()) for w in app.query("Static"))
            assert "Fare ¥3.60" in text and "Today so far ¥3.60" in text and "Please go through" in text
            assert "go" in app.query_one("#panel").classes
            passback = scenario("stop_passback", gate_service(), clock)
            app.show(passback)
            await pilot.pause()
            assert "Tap only once" in " ".join(str(w.render()) for w in app.query("Static"))
            assert "stop" in app.query_one("#panel").classes

    import asyncio

    asyncio.run(check())


def test_block_letters():
    assert big("GO").splitlines()[0] == "███ ███"
    assert len(big("12.30").splitlines()) == 5
