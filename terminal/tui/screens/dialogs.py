"""Small modal dialogs: a text prompt, a PIN prompt, the supervisor approval."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Input, Label, Static

from terminal.tui.screens.base import BaseDialog


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
        yield Footer(compact=True, show_command_palette=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class PinPrompt(BaseDialog[str | None]):
    """A masked PIN entry (digits only)."""

    BINDINGS = [Binding("escape", "cancel", "action.cancel")]

    def __init__(self, title: str, hint: str = "") -> None:
        super().__init__()
        self.prompt_title, self.hint = title, hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.prompt_title, classes="dialog-title")
            if self.hint:
                yield Static(self.hint, classes="hint")
            yield Input(password=True, max_length=8, restrict=r"[0-9]*", id="pin")
        yield Footer(compact=True, show_command_palette=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SupervisorPrompt(BaseDialog[tuple[str, str] | None]):
    """Supervisor id and PIN for a refund, a void or a day close."""

    BINDINGS = [Binding("escape", "cancel", "action.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.tr("supervisor.title"), classes="dialog-title")
            yield Label(self.tr("supervisor.id"))
            yield Input(max_length=32, id="supervisor")
            yield Label(self.tr("supervisor.pin"))
            yield Input(password=True, max_length=8, restrict=r"[0-9]*", id="pin")
        yield Footer(compact=True, show_command_palette=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "supervisor":
            self.query_one("#pin", Input).focus()
            return
        supervisor = self.query_one("#supervisor", Input).value.strip()
        if supervisor and event.value:
            self.dismiss((supervisor, event.value))

    def action_cancel(self) -> None:
        self.dismiss(None)
