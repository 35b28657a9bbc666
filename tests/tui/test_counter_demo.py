"""The counter with the demo's real parts (the sandbox backend over HTTP on 127.0.0.1, the simulated
reader and camera, the simulated PIN pad and customer display): the merchant QR read back from a
screenshot of an 80x24 terminal, what the cashier is told when a device or the network is gone, a
sale paid part by card and part by wallet code, a product's code shown to the camera."""

from __future__ import annotations

import pytest

from drivers.qrdecode import Pipeline
from terminal.config import config_from_mapping
from terminal.demo import Demo
from terminal.tui.app import make_app
from terminal.tui.screens.checkout import CheckoutScreen
from terminal.tui.screens.present import PresentScreen
from terminal.tui.screens.result import ResultScreen
from tests.tui.conftest import sign_in, type_text, wait_for
from tests.tui.screenshot import svg_to_image

pytestmark = pytest.mark.timeout(180)


def make_demo(tmp_path, **sections) -> Demo:
    config = config_from_mapping({"operators": {"idle_sign_out_minutes": 0}, **sections})
    demo = Demo(tmp_path / "demo", config)
    demo.start()
    return demo


@pytest.fixture
def demo(tmp_path):
    demo = make_demo(tmp_path)
    yield demo
    demo.close()


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def to_payment(pilot, digits: str) -> PresentScreen:
    await type_text(pilot, digits)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PresentScreen))
    return pilot.app.screen


@pytest.mark.parametrize("digits", ["100", "123456", "99999999"])
async def test_the_merchant_qr_is_whole_at_80x24_and_decodes_from_a_screenshot(demo, digits):
    """Q shows the merchant code: a screenshot of the 80x24 terminal, drawn cell by cell, decodes to
    exactly the code registered with the backend (the demo's key hint used to cover its bottom rows)."""
    service = demo.service
    journal = service.require_journal()
    app = make_app(service, demo=demo, status_interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot, "1001", "1111")
        present = await to_payment(pilot, digits)
        await pilot.press("q")
        await wait_for(pilot, lambda: journal.merchant_codes.still_open() and text_of(app, "#qr"))
        await pilot.pause()
        code = journal.merchant_codes.still_open()[0]
        payload, _ = service.merchant_codes.payload(present.amount, code["txn_id"])
        image = svg_to_image(app.export_screenshot(), 80, 24)
        decoded = Pipeline(budget_ms=float("inf")).decode(image)
        assert decoded.text == payload
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckoutScreen))


async def test_an_unplugged_reader_is_said_on_the_payment_screen(demo):
    service = demo.service
    app = make_app(service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await to_payment(pilot, "1500")
        await wait_for(pilot, lambda: service.device_states()[0] == "ready")
        await pilot.press("ctrl+r")  # unplug the reader
        await wait_for(pilot, lambda: "card reader is unplugged" in text_of(app, "#devices"))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: text_of(app, "#devices") == "")


async def test_the_merchant_qr_offline_is_a_sentence_not_a_declined_sale(demo):
    service = demo.service
    app = make_app(service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: not demo.network_up)
        await to_payment(pilot, "3300")
        await pilot.press("q")
        await wait_for(pilot, lambda: "needs the network" in text_of(app, "#message"))
        assert isinstance(app.screen, PresentScreen) and text_of(app, "#qr") == ""
    assert list(service.export_journal(None)) == [] and service.open_merchant_codes() == []


async def test_the_camera_says_ready_before_the_first_sale(demo):
    await_ready = demo.service.device_states
    for _ in range(100):
        if await_ready()[1] == "ready":
            break
        import asyncio

        await asyncio.sleep(0.05)
    assert await_ready()[1] == "ready"  # it said "starting" until a payment armed it


async def test_a_sale_paid_part_by_card_and_part_by_wallet_code(demo):
    service = demo.service
    app = make_app(service, demo=demo, status_interval=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await to_payment(pilot, "9000")
        await pilot.press("s")
        await wait_for(pilot, lambda: "AmountPrompt" in type(app.screen).__name__)
        await type_text(pilot, "40")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen) and app.screen.amount.minor == 4000)
        await wait_for(pilot, lambda: service.device_states()[0] == "ready")
        await pilot.press("3")  # the UnionPay card pays 40.00
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        assert app.screen.result.outcome == "approved" and "¥50.00 left" in text_of(app, "#part")
        await pilot.press("enter")  # the next payment: the rest
        await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen) and app.screen.amount.minor == 5000)
        await pilot.press("w")  # a wallet code pays 50.00
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        assert app.screen.result.outcome == "approved"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckoutScreen))
        assert not app.screen.total().is_positive
    card, wallet = [r for r in service.require_journal().txns.rows_since() if r.approved]
    assert (card.method, card.amount.minor, wallet.method, wallet.amount.minor) == ("card", 4000, "wallet_signed", 5000)
    assert card.details["sale"]["id"] == wallet.details["sale"]["id"] and card.details["sale"]["total"] == 9000


async def test_the_customer_display_shows_the_amount_then_the_result(demo):
    app = make_app(demo.service, demo=demo, status_interval=None)
    display = demo.customer_display
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await type_text(pilot, "1234")
        assert (display.current.kind, display.current.amount_text) == ("amount", "¥12.34")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
        await wait_for(pilot, lambda: demo.service.device_states()[0] == "ready")
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        assert display.current.kind == "result" and display.current.approved is True
        assert display.current.message == "APPROVED"


async def test_a_card_that_needs_a_pin_without_a_pin_pad_keeps_the_sale(demo):
    from terminal.tui.host import CustomerSide

    app = make_app(demo.service, demo=demo, status_interval=None, customer=CustomerSide(display=None, pinpad=None))
    async with app.run_test(size=(100, 30)) as pilot:
        await sign_in(pilot, "1001", "1111")
        await to_payment(pilot, "150000")
        await wait_for(pilot, lambda: demo.service.device_states()[0] == "ready")
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen))
        await pilot.pause()
        assert app.screen.result.outcome == "need_cvm" and "no PIN pad" in text_of(app, "#why")
        await pilot.press("enter")  # back to the sale, never a new one
        await wait_for(pilot, lambda: isinstance(app.screen, PresentScreen))
        assert app.screen.amount.minor == 150000
    assert list(demo.service.export_journal(None)) == []


async def test_a_product_code_shown_to_the_camera_adds_the_product(tmp_path):
    catalogue = tmp_path / "products.csv"
    catalogue.write_text("code,name,price,tax_rate\n6901234567892,Oolong tea,6.50,13\n")
    demo = make_demo(tmp_path, checkout={"catalogue": str(catalogue)})
    try:
        app = make_app(demo.service, demo=demo, status_interval=None)
        async with app.run_test(size=(100, 30)) as pilot:
            await sign_in(pilot, "1001", "1111")
            demo._show("6901234567892")  # the product's code held up to the camera
            await wait_for(pilot, lambda: app.screen.sale.basket.count == 1)
            assert "Added: Oolong tea" in text_of(app, "#message")
            assert "Total  ¥6.50" in text_of(app, "#total")
    finally:
        demo.close()
