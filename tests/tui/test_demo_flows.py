"""The checkout end to end through the TUI with the demo's real parts: the sandbox backend over HTTP
on 127.0.0.1, the simulated camera decoding rendered phone screens, the sync worker. No mocks."""

from __future__ import annotations

import time

import pytest

from terminal.config import config_from_mapping
from terminal.demo import Demo
from terminal.tui.app import make_app
from terminal.tui.screens import CheckoutScreen, ResultScreen
from terminal.tui.screens.present import PresentScreen
from tests.tui.conftest import sign_in, type_text

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def demo(tmp_path):
    config = config_from_mapping({"operators": {"idle_sign_out_minutes": 0}})
    demo = Demo(tmp_path / "demo", config)
    demo.start()
    yield demo
    demo.close()


async def wait_for(pilot, condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out on {pilot.app.screen!r}")
        await pilot.pause(0.1)


async def sell_with_wallet_code(pilot, amount_digits: str) -> ResultScreen:
    app = pilot.app
    await type_text(pilot, amount_digits)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
    await pilot.press("w")
    await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
    return app.screen


async def test_offline_sale_is_queued_and_synced_when_the_network_returns(demo):
    service = demo.service
    app = make_app(service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        assert isinstance(app.screen, CheckoutScreen)
        await pilot.press("ctrl+n")  # pull the network
        await wait_for(pilot, lambda: not demo.network_up)
        result = await sell_with_wallet_code(pilot, "8000")
        assert result.result.outcome == "approved" and result.result.auth_mode == "offline"
        row = result.result.row
        assert service.require_journal().get(row.id).sync_state == "pending"
        await app.refresh_status().wait()
        await pilot.pause()
        assert app.status.queue == 1
        await pilot.press("enter")  # new sale
        await wait_for(pilot, lambda: isinstance(app.screen, CheckoutScreen))
        await pilot.press("ctrl+n")  # restore it
        await wait_for(pilot, lambda: demo.network_up)
        service.sync_once()
        assert service.require_journal().get(row.id).sync_state == "accepted"
        stored = {t["id"] for t in demo.sandbox.admin.transactions(service.config.terminal.id)}
        assert row.id in stored
        await app.refresh_status().wait()
        await pilot.pause()
        assert app.status.queue == 0 and app.status.backend == "online"


async def test_above_the_floor_limit_goes_online(demo):
    app = make_app(demo.service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        result = await sell_with_wallet_code(pilot, "25000")
        assert result.result.outcome == "approved" and result.result.auth_mode == "online"
        assert "approved by the backend" in str(result.query_one("#how").render())


async def test_camera_unplugged_during_a_sale_recovers(demo):
    service = demo.service
    app = make_app(service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await type_text(pilot, "1500")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
        demo.camera.unplug()
        await wait_for(pilot, lambda: service.device_states()[1] == "absent")
        await app.refresh_status().wait()
        await pilot.pause()
        assert app.status.camera == "absent"
        demo.camera.plug()
        await wait_for(pilot, lambda: service.device_states()[1] == "ready")
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        assert app.screen.result.outcome == "approved"


async def test_a_numeric_code_needs_the_backend(demo):
    app = make_app(demo.service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: not demo.network_up)
        await type_text(pilot, "3000")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        result = app.screen.result
        assert result.outcome == "declined" and "online_only_method" in result.reasons
        assert "this way of paying needs the backend" in str(app.screen.query_one("#why").render())
