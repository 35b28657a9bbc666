"""Widgets shared by the screens: the status bar, the keypad-style amount entry, the outcome banner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

from terminal.core.money import MAX_MINOR_UNITS, Currency, Money, format_money


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything the status bar shows, collected off the event loop (`at` None: not collected yet; the
    bar then says the terminal is starting up and shows no figure)."""

    at: datetime | None = None
    backend: str = "disabled"  # online | offline | connecting | not_enrolled | disabled
    queue: int = 0
    oldest_pending_s: float | None = None
    reader: str = "none"  # ReaderStatus.state or "none"
    camera: str = "none"
    storage_ok: bool = True
    integrity_hold: str | None = None  # why offline approvals are off until a technician resolves it


def human_age(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d"


INTEGRITY_HOLD_STYLE = "bold black on yellow"


class KeyFooter(Footer):
    """The key line at the bottom of every screen: Textual's footer (its keys can be clicked or
    touched), built again only when the keys it shows change. Textual's own footer builds all its keys
    again whenever the screen's bindings are looked at anew (a screen shown, a focus moved, a dialog
    closed): on a till that is most of the work of every screen change."""

    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)
        self._shown: tuple[tuple[str, str, str, bool, str], ...] | None = None

    @staticmethod
    def keys_shown(screen: Screen) -> tuple[tuple[str, str, str, bool, str], ...]:
        return tuple((b.key, b.action, b.description, enabled, tooltip)
                     for _, b, enabled, tooltip in screen.active_bindings.values() if b.show)

    def bindings_changed(self, screen: Screen) -> None:
        shown = self.keys_shown(screen)
        if shown == self._shown:
            return
        super().bindings_changed(screen)
        if screen.app.app_focus and self.is_attached and screen is self.screen:  # built again with these keys
            self._shown = shown


class StatusBar(Static):
    """One line on every screen: backend, queue, reader, camera, operator, clock; first, in a colour of
    its own, a storage failure or an integrity hold (offline approvals off until a technician has
    checked the journal and run `walletpos journal resolve`)."""

    DEFAULT_CSS = """
    StatusBar { dock: top; height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "status", self._refresh_status)
        self.watch(self.app, "operator", self._refresh_status)

    def on_resize(self) -> None:
        self._refresh_status()

    def _refresh_status(self, _: object = None) -> None:
        from terminal.i18n import display_width

        width = self.app.size.width - 2
        # the long form when it fits, else the compact one, then without the clock, then without the
        # operator too (an alarm, which comes first, is never the part cut off)
        for short, drop in ((False, 0), (True, 0), (True, 1), (True, 2)):
            text = self._render_status(short, drop)
            if display_width(text.plain) <= width:
                break
        self.update(text)

    def _render_status(self, short: bool, drop: int = 0) -> Text:
        app = self.app
        tr = app.tr  # type: ignore[attr-defined]
        status: StatusSnapshot = app.status  # type: ignore[attr-defined]
        parts: list[tuple[str, str]] = []
        if not status.storage_ok:
            parts.append((tr("status.storage_failed"), "bold white on red"))
        if status.integrity_hold is not None:  # the journal is in doubt: a technician must check it
            parts.append((tr("status.short.integrity_hold" if short else "status.integrity_hold"),
                          INTEGRITY_HOLD_STYLE))
        style = {"online": "bold green", "offline": "bold red", "not_enrolled": "bold red"}.get(status.backend,
                                                                                             "yellow")
        # `at` None: nothing collected yet (the first moments of a start): no figure is shown as a fact
        backend = status.backend if status.at is not None else "starting"
        parts.append(("● " + tr(("status.short." if short else "status.backend.") + backend), style))
        prefix = "status.short." if short else "status."
        if status.at is None:
            pass
        elif status.oldest_pending_s is not None and status.queue:
            parts.append((tr(prefix + "queue_oldest", count=status.queue, age=human_age(status.oldest_pending_s)),
                          "yellow" if status.oldest_pending_s > 3600 else ""))
        else:
            parts.append((tr(prefix + "queue", count=status.queue), ""))
        for key, state in (("reader", status.reader), ("camera", status.camera)) if status.at is not None else ():
            style = "green" if state in ("ready", "card_present") else ("bold red" if state in ("absent", "error")
                                                                         else "")
            word = tr(("short." if short else "state.") + state)
            parts.append((tr(prefix + key, state=word), style))
        operator = app.operator  # type: ignore[attr-defined]
        if drop >= 2:
            pass
        elif operator is None:
            parts.append((tr("status.signed_out"), "dim"))
        elif short:
            parts.append((operator.name[:14], "bold"))
        else:
            parts.append((tr("status.operator", name=operator.name, role=tr(f"role.{operator.role}")), "bold"))
        if status.at is not None and drop < 1:
            zone = app.service.config.terminal.zone  # type: ignore[attr-defined]
            parts.append((status.at.astimezone(zone).strftime("%H:%M" if short else "%H:%M:%S"), ""))
        text = Text()
        for i, (part, style) in enumerate(parts):
            if i:
                text.append(" │ ", "dim")
            text.append(part, style)
        return text


class AmountEntry(Widget, can_focus=True):
    """Cash-register amount entry: digits shift in from the right (1 2 3 4 shows 12.34).

    The keys that act on the amount (`command_keys`: Enter charges it, F2 makes it an item) are
    handled here, in the order they were typed, not by screen bindings: a screen's binding runs when
    the key reaches the screen, and with priority it runs before the digits typed just ahead of it
    are in the amount. Each command is posted as a `Command` carrying the amount as it was when its
    key came, and the entry then holds every key typed after it (`held`) until the screen says what
    happens next (`release`): the held keys then go on to whatever is on screen (the payment
    screen, an item dialog), or back to this entry, in the order they were typed. So a burst from a
    fast typist, a keypad or a barcode scanner is never charged wrongly and never loses a key.

    With `code_digits` (a catalogue is loaded) the entry also takes longer digit runs than an amount
    can be: a product code typed or scanned as digits, then Enter (`Command.typed` keeps them)."""

    DEFAULT_CSS = """
    AmountEntry { height: 3; border: round $accent; content-align: right middle; padding: 0 2;
                  text-style: bold; }
    AmountEntry:focus { border: round $success; }
    """

    MAX_AMOUNT_DIGITS = 10
    minor: reactive[int] = reactive(0)

    class Changed(Message):
        def __init__(self, entry: AmountEntry, minor: int) -> None:
            super().__init__()
            self.entry, self.minor = entry, minor

    class TooLarge(Message):
        pass

    class Command(Message):
        """A command key (`key`) typed after `typed` (the digits as typed; `minor` the amount they make,
        or None when they are too many for an amount: a product code)."""

        def __init__(self, entry: AmountEntry, key: str, typed: str, minor: int | None) -> None:
            super().__init__()
            self.entry, self.key, self.typed, self.minor = entry, key, typed, minor

    def __init__(self, currency: Currency, *, decimal_sep: str = ".", group_sep: str = ",",
                 command_keys: tuple[str, ...] = ("enter",), code_digits: int = 0, id: str | None = None) -> None:
        super().__init__(id=id)
        self.currency = currency
        self.decimal_sep, self.group_sep = decimal_sep, group_sep
        self.command_keys = command_keys
        self.code_digits = code_digits
        self.typed = ""
        self.held = False
        self._held_keys: list[tuple[str, str | None]] = []

    @property
    def amount(self) -> Money:
        return Money(self.minor, self.currency)

    def render(self) -> Text:
        if len(self.typed) > self.MAX_AMOUNT_DIGITS:
            return Text("#" + self.typed)
        return Text(format_money(self.amount, decimal_sep=self.decimal_sep, group_sep=self.group_sep))

    def clear(self) -> None:
        self.typed = ""
        self._set_minor(0)

    def _set_minor(self, value: int) -> None:
        if self.minor == value:
            self.refresh()
        self.minor = value

    def _digits_changed(self) -> None:
        digits = self.typed.lstrip("0")
        self._set_minor(int(digits) if digits and len(self.typed) <= self.MAX_AMOUNT_DIGITS else 0)

    def on_key(self, event: events.Key) -> None:
        if self.held:  # after a command: kept for what comes next (see `release`)
            self._held_keys.append((event.key, event.character))
            event.stop()
            event.prevent_default()
            return
        if event.key in self.command_keys:
            digits = self.typed
            minor = self.minor if len(digits) <= self.MAX_AMOUNT_DIGITS else None
            self.held = True
            event.stop()
            event.prevent_default()
            self.post_message(self.Command(self, event.key, digits, minor))
            return
        if event.character is not None and event.character.isdigit() and event.character.isascii():
            longest = max(self.MAX_AMOUNT_DIGITS, self.code_digits)
            value = int((self.typed + event.character).lstrip("0") or "0")
            if len(self.typed) >= longest or (not self.code_digits and value > min(MAX_MINOR_UNITS,
                                                                                   10**10 - 1)):
                self.post_message(self.TooLarge())
            elif self.typed or event.character != "0" or self.code_digits:
                self.typed += event.character
                self._digits_changed()
            event.stop()
        elif event.key == "backspace":
            self.typed = self.typed[:-1]
            self._digits_changed()
            event.stop()
        elif event.key == "delete":
            self.clear()
            event.stop()

    def release(self, *, replay: bool = True) -> None:
        """Take keys again; the keys held since the last command are typed again, in order, into
        whatever has the focus now (with `replay`), or dropped."""
        keys, self._held_keys = self._held_keys, []
        self.held = False
        if replay:
            for key, character in keys:
                self.app.post_message(events.Key(key, character))

    def watch_minor(self, value: int) -> None:
        self.post_message(self.Changed(self, value))


class Banner(Static):
    """The big result word: APPROVED / DECLINED / ENTER PIN / TRY ANOTHER CARD."""

    DEFAULT_CSS = """
    Banner { height: 5; content-align: center middle; text-style: bold; border: heavy $primary; }
    Banner.approved { background: $success; color: $text; border: heavy $success-darken-2; }
    Banner.declined { background: $error; color: $text; border: heavy $error-darken-2; }
    Banner.attention { background: $warning; color: $background; border: heavy $warning-darken-2; }
    """

    def show(self, text: str, kind: str) -> None:
        self.remove_class("approved", "declined", "attention")
        self.add_class(kind)
        self.update(text)
