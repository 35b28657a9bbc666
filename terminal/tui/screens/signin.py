"""Operator sign-in: id and PIN; wrong PINs count down to a lockout."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from terminal.operators import PinCheck
from terminal.tui.screens.base import BaseScreen, moves_field, screen_work


class SignInScreen(BaseScreen):
    TITLE_KEY = "signin.title"
    BINDINGS = [Binding("enter", "submit", "action.sign_in", show=True),
                Binding("f12", "language", "action.language")]

    def body(self) -> ComposeResult:
        with Vertical(classes="form"):
            yield Static(self.tr("signin.hint"), classes="hint")
            yield Label(self.tr("signin.operator"))
            yield Input(max_length=32, id="operator")
            yield Label(self.tr("signin.pin"))
            yield Input(password=True, max_length=8, restrict=r"[0-9]*", id="pin")
            yield Static("", id="message", classes="message")
            if self.wp.demo is not None:
                yield Static(self.tr("demo.operators", operators=", ".join(
                    f"{self.tr('role.' + role)} {op_id} / {pin}" for role, op_id, pin in self.wp.demo.operator_hint())),
                    classes="hint")

    def action_language(self) -> None:
        """The other language, at once."""
        self.wp.switch_language(self.wp.next_language())

    def on_mount(self) -> None:
        self.query_one("#operator", Input).focus()
        self.check_operators()

    @screen_work(group="signin")
    def check_operators(self) -> None:
        if self.wp.service.storage_problem is None and not self.wp.service.has_operators():
            self.from_worker(self.say, self.tr("signin.no_operators"))

    def holds_keys_after(self, key: str) -> bool:
        """Enter moves from the id to the PIN, or signs in: the keys typed right after it (the PIN, the
        first amount) wait for the PIN field or the checkout, as typed."""
        return (key == "enter" and isinstance(self.focused, Input)) or moves_field(self, key)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.wp.release_keys_on_focus(event.widget)  # Tab moved to the other field: the keys go there

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "operator":
            self.release_keys_to(self.query_one("#pin", Input))
        else:
            self.action_submit()

    def action_submit(self) -> None:
        operator = self.query_one("#operator", Input).value.strip()
        pin = self.query_one("#pin", Input).value
        if not operator:
            self.release_keys_to(self.query_one("#operator", Input))
            return
        if not pin:
            self.release_keys_to(self.query_one("#pin", Input))
            return
        self.say(self.tr("signin.checking"))
        self.check(operator, pin)

    @screen_work(exclusive=True, group="signin")
    def check(self, operator: str, pin: str) -> None:
        result = self.wp.service.sign_in(operator, pin)
        self.from_worker(self.done, result)

    def done(self, result: PinCheck) -> None:
        pin = self.query_one("#pin", Input)
        pin.value = ""
        if result.ok and result.operator is not None:
            self.wp.signed_in(result.operator)
            return
        if result.reason == "wrong_pin":
            self.say(self.tr("signin.wrong_pin", left=result.attempts_left))
        elif result.reason == "locked" and result.locked_until is not None:
            self.say(self.tr("signin.locked", until=self.local_time(result.locked_until, "%H:%M")))
        else:
            self.say(self.tr(f"signin.{result.reason}"))
        self.release_keys_to(pin)
