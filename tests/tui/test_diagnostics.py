"""The technician's diagnostics screen driven with Pilot over a real service: the test tap on the
simulated reader shows the whole APDU exchange decoded (card numbers masked) and journals nothing, a
failed tap is kept and replayed from the screen, the camera preview shows the picture with its
sharpness and decode rate, the log level changes at run time; and a snapshot of the screen in both
languages at 80x24."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drivers.camera import CameraScanner
from drivers.sim.cards import make_card
from drivers.sim.profiles import PROFILES
from drivers.simcamera import SimulatedCamera
from drivers.simreader import SimReader
from terminal.bootstrap import Devices, bootstrap
from terminal.config import config_from_mapping
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts
from terminal.tui.app import make_app
from terminal.tui.screens.diagnostics import DiagnosticsScreen
from tests.tui.conftest import sign_in, wait_for
from tests.tui.test_snapshots import settle

OFFLINE = {"backend": {"enabled": False}}
SNAPSHOT_AREAS = ("system", "reader", "backend", "clock", "queue", "limits")  # free disk differs by machine


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


@pytest.fixture
def reader() -> SimReader:
    return SimReader(name="counter reader")


@pytest.fixture
def camera() -> SimulatedCamera:
    return SimulatedCamera(width=640, height=360, fps=15)


@pytest.fixture
def technician_service(data_dir, clock, reader, camera) -> Iterator:
    devices = Devices(open_reader=lambda: reader, open_scanner=lambda: CameraScanner(camera))
    svc = bootstrap(config_from_mapping(OFFLINE), data_dir, clock=clock, devices=devices)
    svc.operators.add("tech1", "Zhao Lei", "technician", "3333", now=svc.clock())
    level = svc.log_level()
    yield svc
    svc.set_log_level(level)
    svc.close()


async def test_test_tap_shows_the_exchange_masked_and_journals_nothing(technician_service, reader):
    app = make_app(technician_service, status_interval=None)
    async with app.run_test(size=(100, 40)) as pilot:
        await sign_in(pilot, "tech1", "3333")
        assert isinstance(app.screen, DiagnosticsScreen)
        await pilot.press("t")
        await wait_for(pilot, lambda: "Present a card" in text_of(app, "#tap"))
        reader.tap(make_card("visa"))
        await wait_for(pilot, lambda: "Card read" in text_of(app, "#tap"))
        shown = text_of(app, "#tap")
        assert "visa 476173******0010" in shown
        for line in ("> SELECT 2PAY.SYS.DDF01  9000", "> SELECT A0000000031010  9000",
                     "> GET PROCESSING OPTIONS  9000", "> READ RECORD 1 of SFI 1  9000",
                     "5A PAN: 476173******0010", "5F20 card-holder name: <15 bytes masked>",
                     "57 track 2 equivalent data: 476173******0010D…", "4 commands in"):
            assert line in shown, line
        assert shown.count(" ms\n") >= 4  # each command's time
        assert PROFILES["visa"].pan not in shown
        assert technician_service.journal.head().counts()["total"] == 0
        assert technician_service.failed_taps() == []

        await pilot.press("t")
        await wait_for(pilot, lambda: "Present a card" in text_of(app, "#tap"))
        reader.tap(make_card("gpo_refused"))
        await wait_for(pilot, lambda: "Kept as failed tap" in text_of(app, "#tap"))
        assert "> GET PROCESSING OPTIONS  6985" in text_of(app, "#tap")
        kept = technician_service.failed_taps()
        assert len(kept) == 1 and kept[0].outcome == "try_another_card"
        await pilot.press("r")  # to the failed taps
        await settle(pilot)
        assert app.screen.query_one("#failed").row_count == 1
        await pilot.press("r")  # replay the selected one through the kernel
        await wait_for(pilot, lambda: f"replay of {kept[0].name}" in text_of(app, "#tap"))
        assert "Card not usable" in text_of(app, "#tap") and "> GET PROCESSING OPTIONS  6985" in text_of(app, "#tap")
        assert len(technician_service.failed_taps()) == 1  # the replay is not kept again
        assert technician_service.journal.head().counts()["total"] == 0


async def test_camera_preview_and_log_level(technician_service, camera):
    camera.show("https://wallet.example/pay/0001")
    app = make_app(technician_service, status_interval=None)
    async with app.run_test(size=(100, 40)) as pilot:
        await sign_in(pilot, "tech1", "3333")
        await pilot.press("c")
        await wait_for(pilot, lambda: "Code read in" in text_of(app, "#camera-figures"))
        await wait_for(pilot, lambda: not text_of(app, "#camera-figures").startswith("Code read in 0 "))
        figures = text_of(app, "#camera-figures")
        assert "640x360 at" in figures and "█" in figures
        preview = text_of(app, "#preview")
        assert preview.count("▀") >= 40 * 12
        await pilot.press("c")  # stop
        await wait_for(pilot, lambda: "starts the camera preview" in text_of(app, "#preview"))

        technician_service.set_log_level("INFO")
        await pilot.press("l")
        assert technician_service.log_level() == "WARNING"
        audit = technician_service.require_journal().audit.rows(5)
        assert any(r["event"] == "log_level" and r["actor"] == "tech1" for r in audit)
        await app.workers.wait_for_complete()


def seeded_service(data_dir, clock):
    svc = bootstrap(config_from_mapping(OFFLINE), data_dir, clock=clock, env={})
    svc.operators.add("tech1", "Zhao Lei", "technician", "3333", now=svc.clock())
    for i, minor in enumerate((1234, 8800)):
        svc.pay(PaymentRequest(Money(minor, svc.currency), Method.CARD, card_token="tokA"),
                CardFacts(scheme="unionpay", masked_pan="622202******1234"),
                txn_id=f"01a20700-0000-7000-8000-00000000000{i}")
    return svc


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_snapshot(snap_compare, data_dir, clock, locale):
    svc = seeded_service(data_dir, clock)
    level = svc.log_level()
    svc.set_log_level("INFO")
    app = make_app(svc, locale=locale, status_interval=None)

    async def run(pilot) -> None:
        await sign_in(pilot, "tech1", "3333")
        await pilot.app.switch_screen(pilot.app.make(DiagnosticsScreen, SNAPSHOT_AREAS))
        await settle(pilot)

    try:
        assert snap_compare(app, terminal_size=(80, 24), run_before=run)
    finally:
        svc.set_log_level(level)
        svc.close()
