"""Refund a sale (by reference or from the list) and void the last sale; both need a supervisor."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from terminal.core.money import parse_amount
from terminal.errors import MoneyError
from terminal.tui.screens.base import BaseScreen, screen_work


class RefundScreen(BaseScreen):
    TITLE_KEY = "refund.title"
    BINDINGS = [Binding("f9", "confirm", "action.confirm"), Binding("escape", "back", "action.back")]

    def __init__(self, reference: str = "") -> None:
        super().__init__()
        self.reference = reference
        self.original: Any = None

    def body(self) -> ComposeResult:
        with Vertical(classes="form"):
            yield Label(self.tr("refund.reference"))
            yield Input(value=self.reference, max_length=40, id="reference")
            yield Static(self.tr("refund.lookup"), id="original", classes="hint")
            yield Label(self.tr("refund.amount"))
            yield Input(max_length=16, restrict=r"[0-9.,]*", id="amount")
            yield Static("", id="message", classes="message")

    def on_mount(self) -> None:
        if self.reference:
            self.lookup(self.reference)
            self.query_one("#amount", Input).focus()
        else:
            self.query_one("#reference", Input).focus()

    def say(self, text: str) -> None:
        self.query_one("#message", Static).update(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "reference":
            self.lookup(event.value)
            self.query_one("#amount", Input).focus()
        else:
            self.action_confirm()

    @screen_work(exclusive=True, group="refund")
    def lookup(self, reference: str) -> None:
        service = self.wp.service
        row = service.find_original(reference) if reference.strip() else None
        sale = service.original_sale(row) if row is not None else None
        self.from_worker(self.show_original, row, sale)

    def show_original(self, row: Any, sale: Any) -> None:
        self.original = row
        target = self.query_one("#original", Static)
        if row is None:
            target.update(self.tr("problem.not_found"))
            return
        text = self.tr("refund.original", amount=self.money(row.amount), time=self.local_time(row.created_at),
                       method=row.masked_pan or self.tr(f"method.{row.method}"))
        left = sale.amount - sale.refunded
        target.update(f"{text}\n{self.tr('refund.refundable', amount=self.money(left))}")

    def action_confirm(self) -> None:
        from terminal.tui.screens.dialogs import SupervisorPrompt

        reference = self.query_one("#reference", Input).value.strip()
        if not reference:
            self.query_one("#reference", Input).focus()
            return
        text = self.query_one("#amount", Input).value.strip()
        amount = None
        if text:
            display = self.wp.service.config.display
            try:
                amount = parse_amount(text, self.wp.service.currency, decimal_sep=display.decimal_separator,
                                      group_sep=display.group_separator)
            except MoneyError as exc:
                self.say(str(exc))
                return

        def approved(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self.run_refund(reference, amount, *answer)

        self.app.push_screen(self.wp.make(SupervisorPrompt), approved)

    @screen_work(exclusive=True, group="refund")
    def run_refund(self, reference: str, amount: Any, supervisor: str, pin: str) -> None:
        operator = self.wp.operator.id if self.wp.operator else None
        result = self.wp.service.refund(reference, amount, operator=operator, supervisor_id=supervisor,
                                        supervisor_pin=pin)
        self.from_worker(self.done, result, when_gone=self.done_after_leaving)

    def outcome_text(self, result: Any) -> str:
        if result.ok:
            return self.tr("refund.done", amount=self.money(result.row.amount))
        return self.tr("refund.refused", why=result.message(self.wp.locale))

    def done(self, result: Any) -> None:
        self.say(self.outcome_text(result))
        if result.ok:
            self.lookup(result.row.reference)
            self.wp.ring()

    def done_after_leaving(self, result: Any) -> None:
        """The cashier left the screen while the refund was being decided: tell them how it went."""
        self.app.notify(self.outcome_text(result), severity="information" if result.ok else "warning", timeout=30)

    def action_back(self) -> None:
        self.dismiss()


class VoidScreen(BaseScreen):
    TITLE_KEY = "void.title"
    BINDINGS = [Binding("f9", "confirm", "action.confirm"), Binding("escape", "back", "action.back")]

    def body(self) -> ComposeResult:
        with Vertical(classes="form"):
            yield Static("", id="last")
            yield Static(self.tr("void.confirm"), classes="hint")
            yield Static("", id="message", classes="message")

    def on_mount(self) -> None:
        self.load()

    @screen_work(exclusive=True, group="void")
    def load(self) -> None:
        row = self.wp.service.last_sale()
        self.from_worker(self.show_last, row)

    def show_last(self, row: Any) -> None:
        last = self.query_one("#last", Static)
        if row is None:
            last.update(self.tr("void.none"))
        else:
            last.update(self.tr("void.last", amount=self.money(row.amount), time=self.local_time(row.created_at),
                                method=row.masked_pan or self.tr(f"method.{row.method}")))

    def action_confirm(self) -> None:
        from terminal.tui.screens.dialogs import SupervisorPrompt

        def approved(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self.run_void(*answer)

        self.app.push_screen(self.wp.make(SupervisorPrompt), approved)

    @screen_work(exclusive=True, group="void")
    def run_void(self, supervisor: str, pin: str) -> None:
        operator = self.wp.operator.id if self.wp.operator else None
        result = self.wp.service.void_last(operator=operator, supervisor_id=supervisor, supervisor_pin=pin)
        self.from_worker(self.done, result, when_gone=self.done_after_leaving)

    def outcome_text(self, result: Any) -> str:
        if result.ok:
            return self.tr("void.done", amount=self.money(result.row.amount))
        return self.tr("void.refused", why=result.message(self.wp.locale))

    def done(self, result: Any) -> None:
        self.query_one("#message", Static).update(self.outcome_text(result))
        if result.ok:
            self.wp.ring()

    def done_after_leaving(self, result: Any) -> None:
        """The cashier left the screen while the void was being decided: tell them how it went."""
        self.app.notify(self.outcome_text(result), severity="information" if result.ok else "warning", timeout=30)

    def action_back(self) -> None:
        self.dismiss()
