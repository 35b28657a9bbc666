"""The lines of the sale on the checkout: pick a line, change its quantity, remove or edit it, add a
product, write the sale's note. A sale partly paid (split tender) is locked: its lines stay as they
were paid for."""

from __future__ import annotations

from collections.abc import Callable

from terminal.core.basket import BasketError, Line, Product, line_from
from terminal.tui.screens.base import BaseScreen
from terminal.tui.screens.sale import Sale, Ticket


class SaleLines(BaseScreen):
    """The checkout's line keys (+, -, up, down, F3, F8, F9). The checkout holds the sale and draws it."""

    sale: Sale
    ticket: Ticket | None
    selected: int | None  # the line the keys act on (None: the last one)
    show_sale: Callable[[], None]

    def item_name(self, line: Line) -> str:
        return line.name or self.tr("checkout.unnamed_item")

    def locked(self) -> bool:
        if self.ticket is not None and self.ticket.paid:
            self.say(self.tr("checkout.finish_first"))
            return True
        return False

    def add_product(self, product: Product, quantity: int = 1) -> None:
        if self.locked():
            return
        try:
            self.sale.basket, self.selected = self.sale.basket.add(line_from(product, quantity))
        except BasketError as exc:
            self.say(exc.message)
            return
        self.say(self.tr("checkout.added", name=product.name))
        self.show_sale()

    def current_line(self) -> int | None:
        lines = self.sale.basket.lines
        if not lines:
            return None
        index = self.selected if self.selected is not None else len(lines) - 1
        return min(index, len(lines) - 1)

    def action_select_line(self, step: int) -> None:
        index = self.current_line()
        if index is None:
            return
        self.selected = max(0, min(len(self.sale.basket.lines) - 1, index + step))
        self.show_sale()

    def action_quantity(self, step: int) -> None:
        index = self.current_line()
        if index is None or self.locked():
            return
        line = self.sale.basket.lines[index]
        if line.quantity + step < 1:
            self.action_remove_line()
            return
        try:
            self.sale.basket = self.sale.basket.set_quantity(index, line.quantity + step)
        except BasketError as exc:
            self.say(exc.message)
            return
        self.selected = index
        self.show_sale()

    def action_remove_line(self) -> None:
        index = self.current_line()
        if index is None or self.locked():
            return
        name = self.item_name(self.sale.basket.lines[index])
        self.sale.basket = self.sale.basket.remove(index)
        self.selected = min(index, len(self.sale.basket.lines) - 1) if self.sale.basket.lines else None
        self.say(self.tr("checkout.removed", name=name))
        self.show_sale()

    def action_edit_line(self) -> None:
        from terminal.tui.screens.items import ItemChoice, ItemPrompt

        index = self.current_line()
        if index is None or self.locked():
            return
        line = self.sale.basket.lines[index]

        def edited(choice: ItemChoice | None) -> None:
            if choice is None:
                return
            try:
                self.sale.basket = self.sale.basket.replace_line(
                    index, Line(choice.name if not line.code else line.name, line.unit, choice.quantity,
                                line.tax_rate, line.code))
            except BasketError as exc:
                self.say(exc.message)
                return
            self.selected = index
            self.show_sale()

        self.app.push_screen(self.wp.make(ItemPrompt, self.wp.service.catalogue(), line.unit, self.money(line.unit),
                                          name=line.name, quantity=line.quantity, editing=True),
                             self.releasing(edited))

    def action_note(self) -> None:
        from terminal.tui.screens.dialogs import TextPrompt

        def set_note(note: str | None) -> None:
            if note is not None:
                self.sale.note = note
                self.show_sale()

        self.app.push_screen(self.wp.make(TextPrompt, self.tr("checkout.note_prompt"), value=self.sale.note),
                             self.releasing(set_note))
