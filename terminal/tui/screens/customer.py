"""The customer's side of the counter as the demo shows it: what the (simulated) customer display
and PIN pad show right now. A real display and PIN pad are devices of their own; this view only
lets the demo's user see what the customer would see."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Label, Static

from drivers.customerdisplay import SimCustomerDisplay
from drivers.pinpad import SimPinPad
from terminal.tui.screens.base import BaseDialog
from terminal.tui.widgets import KeyFooter


class CustomerScreen(BaseDialog[None]):
    BINDINGS = [Binding("escape,ctrl+d", "close", "action.back")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog customer-view"):
            yield Label(self.tr("customer.view_title"), classes="dialog-title")
            yield Static("", id="customer-amount", classes="present-amount")
            yield Static("", id="customer-message")
            yield Static("", id="pinpad", classes="hint")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.refresh_view()
        self.set_interval(0.2, self.refresh_view)

    def refresh_view(self) -> None:
        customer = self.wp.customer
        display = customer.display if customer is not None else None
        pinpad = customer.pinpad if customer is not None else None
        view = display.current if isinstance(display, SimCustomerDisplay) else None
        self.query_one("#customer-amount", Static).update(view.amount_text if view is not None else "")
        self.query_one("#customer-message", Static).update(view.message if view is not None else "")
        pad = pinpad.display if isinstance(pinpad, SimPinPad) else ""
        self.query_one("#pinpad", Static).update(self.tr("customer.pinpad", text=pad) if pad else "")

    def action_close(self) -> None:
        self.dismiss(None)
