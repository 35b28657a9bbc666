"""What every screen has: the status bar on top, a title, the footer of its bindings."""

from __future__ import annotations

from typing import Any, TypeVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

from terminal.tui.widgets import StatusBar


class BaseScreen(Screen):
    TITLE_KEY = "app.title"
    # demo only (hidden from the footer, listed in the command palette and on the present screen)
    BINDINGS = [Binding("ctrl+n", "demo_network", "action.demo_network", show=False),
                Binding("ctrl+r", "demo_reader", "action.demo_reader", show=False)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action.startswith("demo_"):
            return self.wp.demo is not None
        return True

    def action_demo_network(self) -> None:
        self.demo_network()

    @work(thread=True, exclusive=True, group="demo")
    def demo_network(self) -> None:
        up = self.wp.demo.toggle_network()
        self.app.call_from_thread(self.notify, self.tr("demo.network_up" if up else "demo.network_down"))

    def action_demo_reader(self) -> None:
        plugged = self.wp.demo.toggle_reader()
        self.notify(self.tr("demo.reader_plugged" if plugged else "demo.reader_unplugged"))

    @property
    def wp(self) -> Any:
        """The WalletposApp (typed loosely to keep screens free of import cycles)."""
        return self.app

    def tr(self, key: str, **values: object) -> str:
        return self.wp.tr(key, **values)

    def compose(self) -> ComposeResult:
        yield StatusBar()
        yield Static(self.tr(self.TITLE_KEY), classes="screen-title")
        yield from self.body()
        yield Footer(compact=True, show_command_palette=False)

    def body(self) -> ComposeResult:
        yield from ()

    def money(self, amount: Any) -> str:
        from terminal.core.money import format_money

        display = self.wp.service.config.display
        return format_money(amount, decimal_sep=display.decimal_separator, group_sep=display.group_separator)

    def local_time(self, moment: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return moment.astimezone(self.wp.service.config.terminal.zone).strftime(fmt)


ResultT = TypeVar("ResultT")


class BaseDialog(ModalScreen[ResultT]):
    @property
    def wp(self) -> Any:
        return self.app

    def tr(self, key: str, **values: object) -> str:
        return self.wp.tr(key, **values)
