"""The demo's customer on the present screen: keys that make the simulated phone show a code, pay the
merchant's code, tap a virtual card or type on the PIN pad (hidden from the footer, available only
when the terminal runs as the demo: `BaseScreen.check_action` refuses `demo_*` actions otherwise)."""

from __future__ import annotations

from textual.binding import Binding

from terminal.errors import WalletposError
from terminal.tui.screens.base import BaseScreen, screen_work

DEMO_CUSTOMER_BINDINGS = [
    Binding("w,W", "demo_code('real_name')", "action.demo_signed_code", show=False),
    Binding("u,U", "demo_code('unverified')", "action.demo_unverified_code", show=False),
    Binding("n,N", "demo_code('numeric')", "action.demo_numeric_code", show=False),
    Binding("p,P", "demo_pay_code", "action.demo_pay_code", show=False),
    Binding("k,K", "demo_pin(True)", "action.demo_pin_right", show=False),
    Binding("j,J", "demo_pin(False)", "action.demo_pin_wrong", show=False),
    Binding("l,L", "demo_pin_cancel", "action.demo_pin_cancel", show=False),
    *(Binding(str(i + 1), f"demo_tap({i})", f"action.demo_tap_{i + 1}", show=False) for i in range(9)),
]


class DemoCustomerKeys(BaseScreen):
    """The actions of `DEMO_CUSTOMER_BINDINGS` (a screen that uses them lists the bindings itself)."""

    def action_demo_code(self, kind: str) -> None:
        self.demo_code(kind)

    @screen_work(group="demo")
    def demo_code(self, kind: str) -> None:
        demo = self.wp.demo
        if demo is None:
            return
        try:
            if kind == "numeric":
                demo.show_numeric_code()
            else:
                demo.show_signed_code(kind)
        except WalletposError as exc:
            self.from_worker(self.say, exc.message)

    def action_demo_pay_code(self) -> None:
        self.demo_pay_code()

    @screen_work(group="demo")
    def demo_pay_code(self) -> None:
        demo = self.wp.demo
        if demo is None:
            return
        try:
            demo.pay_merchant_code()
        except WalletposError as exc:
            self.from_worker(self.say, exc.message)

    def action_demo_tap(self, index: int) -> None:
        demo = self.wp.demo
        if demo is None:
            return
        try:
            demo.tap_card(index)
        except WalletposError as exc:
            self.say(exc.message)

    def action_demo_pin(self, right: bool) -> None:
        demo = self.wp.demo
        if demo is not None and not demo.customer_enters_pin(right):
            self.say(self.tr("demo.pinpad_idle"))

    def action_demo_pin_cancel(self) -> None:
        demo = self.wp.demo
        if demo is not None:
            demo.customer_cancels_pin()
