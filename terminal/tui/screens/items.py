"""The item dialog: a product from the catalogue (looked up by code or name as the cashier types), or
the keyed amount with a description; a quantity either way. Also edits a line of the sale."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from terminal.core.basket import MAX_QUANTITY, Catalogue, Product
from terminal.core.money import Money
from terminal.tui.screens.base import BaseDialog
from terminal.tui.widgets import KeyFooter


@dataclass(frozen=True)
class ItemChoice:
    """What the cashier chose: a product, or a description for the keyed amount; and how many."""

    name: str
    quantity: int
    product: Product | None = None


class ItemPrompt(BaseDialog[ItemChoice | None]):
    BINDINGS = [
        Binding("escape", "cancel", "action.cancel"),
        Binding("down", "move(1)", "action.next_match", show=False),
        Binding("up", "move(-1)", "action.previous_match", show=False),
    ]

    def __init__(self, catalogue: Catalogue, keyed: Money, money: str, *, name: str = "", quantity: int = 1,
                 editing: bool = False) -> None:
        super().__init__()
        self.catalogue = catalogue if not editing else Catalogue()
        self.keyed = keyed
        self.keyed_text = money
        self.item_name, self.quantity, self.editing = name, quantity, editing
        self.matches: list[Product] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog item-dialog"):
            title = "items.edit_title" if self.editing else "items.title"
            yield Label(self.tr(title), classes="dialog-title")
            if self.keyed.is_positive and not self.editing:
                yield Static(self.tr("items.keyed", amount=self.keyed_text), classes="hint")
            placeholder = "items.lookup" if len(self.catalogue) else "items.description"
            yield Input(value=self.item_name, max_length=40, placeholder=self.tr(placeholder), id="query")
            if len(self.catalogue):
                matches = OptionList(id="matches")
                matches.can_focus = False  # the keys stay in the text; Up and Down move the highlight
                yield matches
            yield Label(self.tr("items.quantity"))
            yield Input(value=str(self.quantity), max_length=4, restrict=r"[0-9]*", id="qty")
            yield Static("", id="message", classes="message")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#query", Input).focus()
        self.find(self.item_name)

    @on(Input.Changed, "#query")
    def query_changed(self, event: Input.Changed) -> None:
        self.find(event.value)

    def find(self, text: str) -> None:
        if not len(self.catalogue):
            return
        self.matches = self.catalogue.search(text, limit=6) if text.strip() or not self.keyed.is_positive else []
        options = self.query_one("#matches", OptionList)
        options.clear_options()
        options.add_options([Option(f"{p.code}  {p.name}  {self.money(p.price)}") for p in self.matches])
        if self.matches:
            options.highlighted = 0

    def action_move(self, step: int) -> None:
        if not self.matches:
            return
        options = self.query_one("#matches", OptionList)
        current = options.highlighted or 0
        options.highlighted = max(0, min(len(self.matches) - 1, current + step))

    def chosen(self) -> Product | None:
        if not self.matches:
            return None
        index = self.query_one("#matches", OptionList).highlighted
        return self.matches[index] if index is not None and index < len(self.matches) else None

    @on(OptionList.OptionSelected)
    def picked(self, _: OptionList.OptionSelected) -> None:
        self.submit()

    def holds_keys_after(self, key: str) -> bool:
        return (key == "enter" and isinstance(self.focused, Input)) or super().holds_keys_after(key)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def submit(self) -> None:
        qty_text = self.query_one("#qty", Input).value.strip() or "1"
        quantity = int(qty_text)
        if not 1 <= quantity <= MAX_QUANTITY:
            self.query_one("#message", Static).update(self.tr("items.bad_quantity", most=MAX_QUANTITY))
            self.release_keys_to(self.query_one("#qty", Input))
            return
        name = self.query_one("#query", Input).value.strip()
        product = self.chosen()
        if product is not None and (name or not self.keyed.is_positive):
            self.dismiss(ItemChoice(product.name, quantity, product))
            return
        if self.keyed.is_positive or self.editing:
            self.dismiss(ItemChoice(name, quantity))
            return
        self.query_one("#message", Static).update(self.tr("items.nothing" if len(self.catalogue)
                                                          else "checkout.enter_amount"))
        self.refused()

    def action_cancel(self) -> None:
        self.dismiss(None)
