"""What the screens need from the app that hosts them (`terminal.tui.app.WalletposApp`), as types:
the screens import this leaf, not the app, so the app can import the screens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from textual.screen import Screen
from textual.widget import Widget

from drivers.customerdisplay import CustomerDisplay
from drivers.pinpad import PinPad
from terminal.core.money import Money
from terminal.operators import Operator
from terminal.service import Service

S = TypeVar("S", bound=Screen[Any])


@dataclass(frozen=True)
class CustomerSide:
    """The customer's side of the counter: the PIN pad (the customer's PIN is typed there, never on
    the cashier's keyboard) and the display facing the customer; either may be missing."""

    pinpad: PinPad | None = None
    display: CustomerDisplay | None = None


class DemoControls(Protocol):
    """The demo's keys (present only under `walletpos demo`): the simulated customer and network."""

    def toggle_network(self) -> bool: ...

    def toggle_reader(self) -> bool: ...

    def tap_card(self, index: int) -> str: ...

    def show_signed_code(self, tier: str = "real_name") -> str: ...

    def show_numeric_code(self) -> str: ...

    def pay_merchant_code(self) -> str: ...

    def operator_hint(self) -> list[tuple[str, str, str]]:
        """(role, id, PIN) of the demo's operators, for the sign-in screen."""

    def customer_side(self) -> CustomerSide:
        """The demo's simulated PIN pad and customer display."""

    def customer_enters_pin(self, right: bool) -> bool:
        """The customer types the card's PIN (or a wrong one) on the simulated pad; False when the pad
        is not asking for one."""

    def customer_cancels_pin(self) -> bool: ...


class Host(Protocol):
    service: Service
    locale: str
    operator: Operator | None
    demo: DemoControls | None
    customer: CustomerSide | None

    def tr(self, key: str, **values: object) -> str: ...

    def money(self, amount: Money) -> str: ...

    def switch_language(self, locale: str) -> None: ...

    def next_language(self) -> str: ...

    def make(self, cls: type[S], *args: Any, **kwargs: Any) -> S: ...

    def ring(self) -> None: ...

    def hold_keys(self, limit_s: float = ...) -> None: ...

    def release_keys(self, hold: int | None = None) -> None: ...

    def key_hold(self) -> int: ...

    def release_keys_on_focus(self, widget: Widget) -> None: ...

    def release_keys_later(self, hold: int | None = None) -> None: ...

    def signed_in(self, operator: Operator) -> None: ...

    def sign_out(self) -> None: ...
