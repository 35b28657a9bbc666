"""What every screen has: the status bar on top, a title, the footer of its bindings."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast

from textual import events, work
from textual.app import ComposeResult
from textual.await_complete import AwaitComplete
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Input, Static

from terminal.core.money import Money, format_money
from terminal.errors import WalletposError
from terminal.tui.host import Host
from terminal.tui.widgets import KeyFooter, StatusBar

log = logging.getLogger("walletpos.tui")


def screen_work(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`@work(thread=True, **options)` for a screen's method that reaches a device, the journal or the
    backend. A `WalletposError` it raises (full disk, a journal held too long, a broken answer) is
    told to the operator, on a notification, also after the screen was left; it never ends the
    app (Textual's default for a failed worker)."""

    def decorate(method: Callable[..., Any]) -> Any:
        @functools.wraps(method)
        def guarded(self: BaseScreen, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except WalletposError as exc:
                log.warning("%s failed: %s", method.__name__, exc.message)
                self.from_worker(self.worker_failed, exc.message, when_gone=self.worker_failed)
                return None

        return work(thread=True, **options)(guarded)

    return decorate


class BaseScreen(Screen):
    TITLE_KEY = "app.title"
    # demo only (hidden from the footer, listed in the command palette and on the present screen)
    BINDINGS = [Binding("ctrl+n", "demo_network", "action.demo_network", show=False),
                Binding("ctrl+r", "demo_reader", "action.demo_reader", show=False),
                Binding("ctrl+d", "app.demo_customer", "action.demo_customer", show=False)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action.startswith("demo_"):
            return self.wp.demo is not None
        return True

    def holds_keys_after(self, key: str) -> bool:
        """True when `key` takes this screen away for one that is not up yet, or moves the focus to
        another field: the keys typed after it then wait (`WalletposApp.hold_keys`) until the screen
        or field they are meant for lets them go (`release_keys_to`, `Host.release_keys`). Here:
        Escape on a screen it takes back (`action_back`), for the screen under it."""
        return key == "escape" and any(isinstance(b, Binding) and b.action == "back" and key in b.key.split(",")
                                       for b in self.BINDINGS)

    def action_back(self) -> None:
        """Back to the screen under this one; the keys typed after Escape go there, in order (they
        reached this screen's queue too, and a priority key among them, Enter, acted here first)."""
        self.dismiss()
        self.wp.release_keys_later()

    def release_keys_to(self, widget: Widget) -> None:
        """Focus `widget`, then let the held keys go to it (a focus change takes effect on the app's
        next turn: the keys are let go after it)."""
        release_keys_to(self, widget)

    def dismiss(self, result: Any = None) -> AwaitComplete:
        return dismiss_once(self, result, super().dismiss)

    def releasing(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """`callback` for a dialog's answer, and then the keys typed after the dialog's Enter go on to
        what is on screen now, in order (the dialog's Enter held them: `BaseDialog.holds_keys_after`)."""
        def answered(result: Any) -> None:
            try:
                callback(result)
            finally:
                self.wp.release_keys()

        return answered

    def action_demo_network(self) -> None:
        self.demo_network()

    @screen_work(exclusive=True, group="demo")
    def demo_network(self) -> None:
        demo = self.wp.demo
        if demo is None:
            return
        up = demo.toggle_network()
        self.from_worker(self.network_toggled, up, when_gone=self.network_toggled)

    def network_toggled(self, up: bool) -> None:
        self.app.notify(self.tr("demo.network_up" if up else "demo.network_down"))

    def action_demo_reader(self) -> None:
        demo = self.wp.demo
        if demo is None:
            return
        plugged = demo.toggle_reader()
        self.notify(self.tr("demo.reader_plugged" if plugged else "demo.reader_unplugged"))

    @property
    def wp(self) -> Host:
        """The app hosting this screen, as the screens see it (`terminal.tui.host.Host`)."""
        return cast(Host, self.app)

    def tr(self, key: str, **values: object) -> str:
        return self.wp.tr(key, **values)

    def say(self, text: str) -> None:
        """Show `text` on the screen's message line (`#message`); the same text again changes nothing
        (every key typed into an amount clears the line: no layout pass for a line already empty)."""
        line = self.query_one("#message", Static)
        if line.content != text:
            line.update(text)

    def from_worker(self, callback: Callable[..., Any], *args: Any,
                    when_gone: Callable[..., Any] | None = None) -> None:
        """Run `callback(*args)` on the app's loop, from a worker thread; when the screen was left
        meanwhile, `when_gone(*args)` instead (None: nothing to tell, the answer only filled the
        screen). An answer the operator waits for (a refund, a day close, a payment) is not lost
        with its screen. In a thread `self.app` is looked up through the screen's parents, which a
        left screen no longer has, so the app is kept from `compose`."""
        def run() -> None:
            if self in self.host.screen_stack:
                callback(*args)
            elif when_gone is not None:
                when_gone(*args)

        try:
            self.host.call_from_thread(run)
        except RuntimeError:
            if self.host.is_running:
                raise
            log.info("the app closed before a worker's answer was shown (%s)", getattr(callback, "__name__", callback))

    def worker_failed(self, message: str) -> None:
        self.app.notify(message, severity="error", timeout=30)

    def compose(self) -> ComposeResult:
        self.host = self.app  # for `from_worker`
        yield StatusBar()
        yield Static(self.tr(self.TITLE_KEY), classes="screen-title")
        yield from self.body()
        yield KeyFooter()

    def body(self) -> ComposeResult:
        yield from ()

    def money(self, amount: Money) -> str:
        display = self.wp.service.config.display
        return format_money(amount, decimal_sep=display.decimal_separator, group_sep=display.group_separator)

    def local_time(self, moment: datetime, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return moment.astimezone(self.wp.service.config.terminal.zone).strftime(fmt)


ResultT = TypeVar("ResultT")


def release_keys_to(screen: Screen[Any], widget: Widget) -> None:
    widget.focus()
    cast(Host, screen.app).release_keys_later()


def moves_field(screen: Screen[Any], key: str) -> bool:
    """Tab (or Shift+Tab) from a text field to another: Textual moves the focus when the key comes
    back unhandled from the field, after the keys typed behind it have reached the field. Held
    instead, they wait for the field the focus moves to (the screen lets them go on its focus)."""
    return (key in ("tab", "shift+tab") and isinstance(screen.focused, Input)
            and len(screen.query(Input)) > 1)


def dismiss_once(screen: Screen[Any], result: Any, dismiss: Callable[[Any], AwaitComplete]) -> AwaitComplete:
    """`Screen.dismiss` for a screen still on the stack; nothing for one already gone. Textual's
    dismiss pops whatever screen is on top: a second Enter that reached a dialog on its way out (a
    burst from a keypad or a scanner) closed the checkout under it, and then stopped the app."""
    if screen not in screen.app.screen_stack:
        log.info("%s was already closed: a key that reached it on its way out is ignored", type(screen).__name__)
        return AwaitComplete.nothing()
    return dismiss(result)


class BaseDialog(ModalScreen[ResultT]):
    @property
    def wp(self) -> Host:
        return cast(Host, self.app)

    def holds_keys_after(self, key: str) -> bool:
        """As `BaseScreen.holds_keys_after`. A dialog that answers on Enter holds the keys typed after
        it: they are meant for the screen under it once it has the answer (`BaseScreen.releasing`),
        not for the dialog on its way out; when Enter does not answer (a wrong value), the dialog
        lets them go to itself (`refused`). Tab between fields holds them too (see `moves_field`)."""
        return moves_field(self, key)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.wp.release_keys_on_focus(event.widget)  # the field Tab moved to (or the first one)

    def refused(self) -> None:
        """Enter did not answer (the dialog says why): the keys held after it come back here."""
        self.wp.release_keys()

    def release_keys_to(self, widget: Widget) -> None:
        release_keys_to(self, widget)

    def dismiss(self, result: ResultT | None = None) -> AwaitComplete:
        return dismiss_once(self, result, super().dismiss)

    def tr(self, key: str, **values: object) -> str:
        return self.wp.tr(key, **values)

    def money(self, amount: Money) -> str:
        display = self.wp.service.config.display
        return format_money(amount, decimal_sep=display.decimal_separator, group_sep=display.group_separator)
