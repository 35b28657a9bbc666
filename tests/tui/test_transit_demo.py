"""`walletpos demo --transit` driven through its passenger display with Pilot: a journey from People's
Square to Century Park, anti-passback, the daily cap and a deny-listed card, with the real sandbox
back office behind it (the demo's journeys reach it and it charges the same day total)."""

from __future__ import annotations

from datetime import timedelta

from terminal.config import load_config
from terminal.demo import TransitDemo
from terminal.gate.display import PassengerDisplay
from tests.tui.conftest import wait_for


def shown(app) -> str:
    return " ".join(str(w.render()) for w in app.query("Static"))


async def test_ride_a_journey_see_passback_and_hit_the_cap(tmp_path):
    demo = TransitDemo(tmp_path / "demo", load_config(env={}), "en")
    service = demo.start()
    try:
        app = PassengerDisplay(service, locale="en", place=demo.places[0], controls=demo, subscribe=False,
                               idle_after={})
        demo.display = app
        local = demo.clock().astimezone(service.zone)
        demo.clock.offset = local.replace(hour=10, minute=0) - local  # 10:00 today: off-peak, one service day
        async with app.run_test(size=(100, 30)) as pilot:
            assert "Tap your card" in shown(app)

            async def press(key: str, expect: str) -> None:
                events = app.last
                await pilot.press(key)
                await wait_for(pilot, lambda: app.last is not events)
                assert expect in shown(app), shown(app)

            await press("1", "Journey started")
            demo.clock.offset += timedelta(minutes=20)
            await press("4", "Fare")  # PSQ -> CTP
            demo.clock.offset += timedelta(seconds=5)
            await press("4", "Tap only once")  # the same card out again at once: passback
            total = 0
            for _ in range(4):
                demo.clock.offset += timedelta(minutes=40)
                await press("3", "Journey started")
                demo.clock.offset += timedelta(minutes=20)
                await press("2", "Fare")
                total = app.last.result.day_total.minor
            assert total == 1200 and "today's cap" in shown(app)
            await press("5", "Card not accepted")  # the issuer's deny list reached the gate at its first sync
            await pilot.press("tab")
            assert "mastercard" in shown(app)
        assert service.run_sync(timeout_s=20)[-1].ok
        day = app.last.result.row.details["service_day"]
        token = app.last.result.row.card_token
        charged = demo.sandbox.admin.transit_card(token, day)
        assert charged["taps"] == [] and charged["daily_charge"] == 0  # the denied card rode nowhere
        visa = [r for r in service.require_journal().txns.recent(50) if r.kind == "fare" and r.approved]
        card = visa[0].card_token
        assert demo.sandbox.admin.transit_card(card, day)["daily_charge"] == 1200
    finally:
        demo.close()
