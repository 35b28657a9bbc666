"""Small modal dialogs: a text prompt, an amount, a yes/no question, the supervisor approval."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from terminal.core.money import Money, parse_amount
from terminal.errors import MoneyError
from terminal.tui.screens.base import BaseDialog
from terminal.tui.widgets import KeyFooter


class TextPrompt(BaseDialog[str | None]):
    """Ask for one line of text; Enter returns it, Escape returns None."""

    BINDINGS = [Binding("escape", "cancel", "action.cancel")]

    def __init__(self, title: str, *, value: str = "", max_length: int = 60) -> None:
        super().__init__()
        self.prompt_title, self.value, self.max_length = title, value, max_length

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.prompt_title, classes="dialog-title")
            yield Input(value=self.value, max_length=self.max_length, id="text")
        yield KeyFooter()

    def holds_keys_after(self, key: str) -> bool:
        return (key == "enter" and isinstance(self.focused, Input)) or super().holds_keys_after(key)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class SupervisorPrompt(BaseDialog[tuple[str, str] | None]):
    """Supervisor id and PIN for a refund, a void or a day close (`title_key`: what is approved)."""

    BINDINGS = [Binding("escape", "cancel", "action.cancel")]

    def __init__(self, title_key: str = "supervisor.title", hint: str = "") -> None:
        super().__init__()
        self.title_key, self.hint = title_key, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.tr(self.title_key), classes="dialog-title")
            if self.hint:
                yield Static(self.hint, classes="hint")
            yield Label(self.tr("supervisor.id"))
            yield Input(max_length=32, id="supervisor")
            yield Label(self.tr("supervisor.pin"))
            yield Input(password=True, max_length=8, restrict=r"[0-9]*", id="pin")
        yield KeyFooter()

    def on_mount(self) -> None:
        # the id and PIN typed right after the key that asked for approval (held meanwhile) come here
        self.release_keys_to(self.query_one("#supervisor", Input))

    def holds_keys_after(self, key: str) -> bool:
        """Enter after the id: the PIN typed right after it waits for the PIN field."""
        return ((key == "enter" and isinstance(self.focused, Input) and self.focused.id == "supervisor")
                or super().holds_keys_after(key))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "supervisor":
            self.release_keys_to(self.query_one("#pin", Input))
            return
        supervisor = self.query_one("#supervisor", Input).value.strip()
        if supervisor and event.value:
            self.dismiss((supervisor, event.value))

    def action_cancel(self) -> None:
        self.dismiss(None)


class AmountPrompt(BaseDialog[Money | None]):
    """Ask for an amount (cash handed over, the part of a split payment): typed as on the amount entry,
    in the terminal's separators; Enter returns it (the default when nothing is typed), Escape None."""

    BINDINGS = [Binding("escape", "cancel", "action.cancel")]

    def __init__(self, title: str, hint: str, default: Money, *, at_least: Money | None = None,
                 at_most: Money | None = None) -> None:
        super().__init__()
        self.prompt_title, self.hint, self.default = title, hint, default
        self.at_least, self.at_most = at_least, at_most

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.prompt_title, classes="dialog-title")
            yield Static(self.hint, classes="hint")
            yield Input(placeholder=self.money(self.default), max_length=16, restrict=r"[0-9.,]*", id="amount")
            yield Static("", id="message", classes="message")
        yield KeyFooter()

    def holds_keys_after(self, key: str) -> bool:
        return (key == "enter" and isinstance(self.focused, Input)) or super().holds_keys_after(key)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.dismiss(self.default)
            return
        display = self.wp.service.config.display
        try:
            amount = parse_amount(text, self.default.currency, decimal_sep=display.decimal_separator,
                                  group_sep=display.group_separator)
        except MoneyError as exc:
            self.query_one("#message", Static).update(str(exc))
            self.refused()
            return
        if self.at_least is not None and amount < self.at_least:
            self.query_one("#message", Static).update(self.tr("dialog.at_least", amount=self.money(self.at_least)))
            self.refused()
            return
        if self.at_most is not None and amount > self.at_most:
            self.query_one("#message", Static).update(self.tr("dialog.at_most", amount=self.money(self.at_most)))
            self.refused()
            return
        self.dismiss(amount)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmPrompt(BaseDialog[bool]):
    """A yes/no question: Enter (or Y) yes, Escape (or N) no."""

    BINDINGS = [Binding("escape,n,N", "answer(False)", "action.no"), Binding("enter,y,Y", "answer(True)", "action.yes")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.prompt_title, self.text = title, text

    def on_mount(self) -> None:
        self.wp.release_keys_later()  # the answer typed right after the key that asked the question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.prompt_title, classes="dialog-title")
            yield Static(self.text)
        yield KeyFooter()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
