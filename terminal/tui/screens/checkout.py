"""Checkout: key the amount (cash-register style), optional items and a note, then charge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from terminal.core.money import Money
from terminal.tui.screens.base import BaseScreen
from terminal.tui.widgets import AmountEntry


@dataclass
class Sale:
    """The sale being put together on the checkout screen."""

    items: list[tuple[str, Money]] = field(default_factory=list)
    note: str = ""


class CheckoutScreen(BaseScreen):
    TITLE_KEY = "checkout.title"
    BINDINGS = [
        Binding("enter", "charge", "action.charge", priority=True),
        Binding("f2", "item", "action.item"),
        Binding("f3", "note", "action.note"),
        Binding("f4", "transactions", "action.transactions"),
        Binding("f5", "refund", "action.refund"),
        Binding("f6", "void", "action.void"),
        Binding("f7", "day_close", "action.day_close"),
        Binding("f10", "sign_out", "action.sign_out"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sale = Sale()

    def body(self) -> ComposeResult:
        display = self.wp.service.config.display
        with Horizontal(classes="checkout"):
            with Vertical(classes="checkout-left"):
                yield Static(self.tr("checkout.amount"), classes="label")
                yield AmountEntry(self.wp.service.currency, decimal_sep=display.decimal_separator,
                                  group_sep=display.group_separator, id="amount")
                yield Static(self.tr("checkout.keypad_hint"), classes="hint")
                yield Static("", id="message", classes="message")
            with Vertical(classes="checkout-right"):
                yield Static(self.tr("checkout.items"), classes="label")
                yield Static("", id="items")
                yield Static("", id="note")
                yield Static("", id="total", classes="total")

    def on_mount(self) -> None:
        self.query_one(AmountEntry).focus()
        self.show_sale()

    def on_screen_resume(self) -> None:
        self.query_one(AmountEntry).focus()
        self.show_sale()

    # -- sale state -----------------------------------------------------------------------------

    def total(self) -> Money:
        entry = self.query_one(AmountEntry).amount
        return sum((m for _, m in self.sale.items), start=Money.zero(entry.currency)) + entry

    def show_sale(self) -> None:
        lines = [self.tr("checkout.item_line", description=d or "-", amount=self.money(m)) for d, m in self.sale.items]
        self.query_one("#items", Static).update("\n".join(lines) or self.tr("checkout.no_items"))
        self.query_one("#note", Static).update(self.tr("checkout.note", note=self.sale.note) if self.sale.note else "")
        self.query_one("#total", Static).update(f"{self.tr('checkout.total')}  {self.money(self.total())}")

    def on_amount_entry_changed(self, _: AmountEntry.Changed) -> None:
        if self.query_one(AmountEntry).amount.is_positive:  # typing clears a message; clearing the entry does not
            self.query_one("#message", Static).update("")
        self.show_sale()

    def on_amount_entry_too_large(self, _: AmountEntry.TooLarge) -> None:
        self.query_one("#message", Static).update(self.tr("checkout.too_large"))

    def new_sale(self) -> None:
        self.sale = Sale()
        self.query_one(AmountEntry).clear()
        self.show_sale()

    def sale_paid_late(self, sale: Any, amount: Money) -> None:
        """`sale` was paid after the cashier left its payment screen (a merchant code paid just before
        it closed, an answer on its way): unless the cashier has changed the sale since, clear it, so
        that Enter does not charge the customer a second time."""
        if sale is self.sale and self.total() == amount:
            self.new_sale()
            self.query_one("#message", Static).update(self.tr("checkout.paid_late"))

    # -- actions --------------------------------------------------------------------------------

    def action_charge(self) -> None:
        from terminal.tui.screens.present import PresentScreen

        total = self.total()
        if not total.is_positive:
            self.query_one("#message", Static).update(self.tr("checkout.enter_amount"))
            return
        self.app.push_screen(self.wp.make(PresentScreen, total, self.sale, self.sale_paid_late), self._after_sale)

    def _after_sale(self, finished: bool | None) -> None:
        if finished:
            self.new_sale()

    def action_item(self) -> None:
        from terminal.tui.screens.dialogs import TextPrompt

        entry = self.query_one(AmountEntry)
        if not entry.amount.is_positive:
            self.query_one("#message", Static).update(self.tr("checkout.enter_amount"))
            return
        amount = entry.amount

        def add(description: str | None) -> None:
            if description is None:
                return
            self.sale.items.append((description, amount))
            entry.clear()
            self.show_sale()

        self.app.push_screen(self.wp.make(TextPrompt, self.tr("checkout.item_description"), max_length=40), add)

    def action_note(self) -> None:
        from terminal.tui.screens.dialogs import TextPrompt

        def set_note(note: str | None) -> None:
            if note is not None:
                self.sale.note = note
                self.show_sale()

        self.app.push_screen(self.wp.make(TextPrompt, self.tr("checkout.note_prompt"), value=self.sale.note), set_note)

    def action_transactions(self) -> None:
        from terminal.tui.screens.transactions import TransactionsScreen

        self.app.push_screen(self.wp.make(TransactionsScreen))

    def action_refund(self) -> None:
        from terminal.tui.screens.refund import RefundScreen

        self.app.push_screen(self.wp.make(RefundScreen))

    def action_void(self) -> None:
        from terminal.tui.screens.refund import VoidScreen

        self.app.push_screen(self.wp.make(VoidScreen))

    def action_day_close(self) -> None:
        from terminal.tui.screens.dayclose import DayCloseScreen

        self.app.push_screen(self.wp.make(DayCloseScreen))

    def action_sign_out(self) -> None:
        self.wp.sign_out()
