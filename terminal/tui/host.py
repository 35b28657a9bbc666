"""What the screens need from the app that hosts them (`terminal.tui.app.WalletposApp`), as types:
the screens import this leaf, not the app, so the app can import the screens."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from textual.screen import Screen

from terminal.operators import Operator
from terminal.service import Service

S = TypeVar("S", bound=Screen[Any])


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


class Host(Protocol):
    service: Service
    locale: str
    operator: Operator | None
    demo: DemoControls | None

    def tr(self, key: str, **values: object) -> str: ...

    def make(self, cls: type[S], *args: Any, **kwargs: Any) -> S: ...

    def ring(self) -> None: ...

    def signed_in(self, operator: Operator) -> None: ...

    def sign_out(self) -> None: ...
