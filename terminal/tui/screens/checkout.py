"""Checkout: key the amount (cash-register style), add items (from the catalogue by code or name, or
the keyed amount), set quantities, remove or edit lines, a note; then charge.

Enter and F2 act on the amount as it was when they were typed (the amount entry handles them in
order with the digits, see `terminal.tui.widgets.AmountEntry`); a digit run of 8 or more digits,
or one that starts with 0, is a product code when a catalogue is loaded (typed, or sent by a
barcode scanner that types), and a product's code shown to the camera adds the product too."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from drivers.customerdisplay import CustomerView
from terminal.core.basket import Basket, BasketError, Line
from terminal.core.money import Money
from terminal.errors import WalletposError
from terminal.journal import TxnRow
from terminal.tui.screens.sale import Sale, Ticket
from terminal.tui.screens.salelines import SaleLines
from terminal.tui.widgets import AmountEntry

log = logging.getLogger("walletpos.tui")

CODE_DIGITS = 14  # longest product code the entry takes (EAN-13, GTIN-14)


def is_code(typed: str) -> bool:
    """A digit run typed on the checkout that is a product code, not an amount."""
    return len(typed) >= 8 or (len(typed) > 1 and typed.startswith("0"))


class CheckoutScreen(SaleLines):
    TITLE_KEY = "checkout.title"
    BINDINGS = [
        Binding("enter", "charge", "action.charge"),
        Binding("f2", "item", "action.item"),
        Binding("f3", "note", "action.note"),
        Binding("f4", "transactions", "action.transactions"),
        Binding("f5", "refund", "action.refund"),
        Binding("f6", "void", "action.void"),
        Binding("f7", "day_close", "action.day_close"),
        # The line keys act on the basket, not on the amount, so they run when the app takes them
        # (priority), in the order typed: a key the amount entry passes on comes back to the app
        # later, when F2 in the same burst may already have put the item dialog on top (+ was lost).
        Binding("f8", "remove_line", "action.remove_line", priority=True),
        Binding("f9", "edit_line", "action.edit_line"),
        Binding("f10", "sign_out", "action.sign_out"),
        Binding("plus", "quantity(1)", "action.quantity_up", show=False, key_display="+", priority=True),
        Binding("minus", "quantity(-1)", "action.quantity_down", show=False, key_display="-", priority=True),
        Binding("down", "select_line(1)", "action.next_line", show=False, priority=True),
        Binding("up", "select_line(-1)", "action.previous_line", show=False, priority=True),
        Binding("ctrl+x", "abandon", "action.abandon", show=False),
    ]

    def __init__(self, sale: Sale | None = None, ticket: Ticket | None = None, *, typed: str = "") -> None:
        super().__init__()
        self.sale = sale or Sale(Basket(self.wp.service.currency))
        self.ticket = ticket  # a sale partly paid (split tender), to be finished
        self.typed = typed  # digits already keyed (the screen built again in another language)
        self.selected: int | None = None
        self.scan_stop = threading.Event()

    # -- layout ---------------------------------------------------------------------------------

    def body(self) -> ComposeResult:
        display = self.wp.service.config.display
        codes = CODE_DIGITS if len(self.wp.service.catalogue()) else 0
        with Horizontal(classes="checkout"):
            with Vertical(classes="checkout-left"):
                yield Static(self.tr("checkout.amount"), classes="label")
                yield AmountEntry(self.wp.service.currency, decimal_sep=display.decimal_separator,
                                  group_sep=display.group_separator, command_keys=("enter", "f2"),
                                  code_digits=codes, id="amount")
                yield Static(self.tr("checkout.keypad_hint_codes" if codes else "checkout.keypad_hint"),
                             classes="hint")
                yield Static("", id="message", classes="message")
            with Vertical(classes="checkout-right"):
                yield Static(self.tr("checkout.items"), classes="label")
                table: DataTable[str] = DataTable(id="items", cursor_type="row", show_header=False)
                table.can_focus = False  # the amount entry keeps the keys; arrows move the cursor from the screen
                yield table
                yield Static("", id="no-items", classes="hint")
                yield Static("", id="note")
                yield Static("", id="tax", classes="hint")
                yield Static("", id="paid", classes="message")
                yield Static("", id="total", classes="total")

    def on_mount(self) -> None:
        table = self.query_one("#items", DataTable)
        table.add_column("name", key="name")
        table.add_column("qty", key="qty")
        table.add_column("amount", key="amount")
        entry = self.query_one(AmountEntry)
        if self.typed:
            entry.typed = self.typed
            entry.minor = int(self.typed.lstrip("0") or "0") if len(self.typed) <= entry.MAX_AMOUNT_DIGITS else 0
        self.release_keys_to(entry)  # keys typed right after signing in (the first amount) come here
        self.show_sale()
        self.start_item_scan()

    def on_screen_resume(self) -> None:
        entry = self.query_one(AmountEntry)
        entry.focus()
        if entry.held:
            self.let_keys_go(entry)
        self.show_sale()
        self.start_item_scan()

    def on_screen_suspend(self) -> None:
        self.scan_stop.set()

    def on_unmount(self) -> None:
        self.scan_stop.set()

    # -- sale state -----------------------------------------------------------------------------

    @property
    def entry(self) -> AmountEntry:
        return self.query_one(AmountEntry)

    def keyed(self) -> Money:
        entry = self.entry
        return entry.amount if len(entry.typed) <= AmountEntry.MAX_AMOUNT_DIGITS else Money.zero(entry.currency)

    def total(self) -> Money:
        if self.ticket is not None:
            return self.ticket.remaining
        return self.sale.basket.total + self.keyed()

    # the item keys act on a line of the sale: with no line they are off, and not in the key line, which
    # then has room for F10 (sign out) at 80 columns
    LINE_ACTIONS = frozenset({"remove_line", "edit_line"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.LINE_ACTIONS and not self.sale.basket.lines:
            return False
        return super().check_action(action, parameters)

    def show_sale(self) -> None:
        basket = self.sale.basket
        self.refresh_bindings()  # the item keys come or go with the lines (check_action; KeyFooter redraws on a change)
        table = self.query_one("#items", DataTable)
        table.clear()
        width = max(8, (self.app.size.width // 2) - 22)
        for line in basket.lines:
            name = self.item_name(line)
            table.add_row(name if len(name) <= width else name[:width - 1] + "…", f"{line.quantity}×",
                          self.money(line.amount))
        if self.selected is not None and not basket.lines:
            self.selected = None
        if basket.lines:
            index = self.selected if self.selected is not None else len(basket.lines) - 1
            table.move_cursor(row=index, animate=False, scroll=True)
        table.display = bool(basket.lines)
        self.query_one("#no-items", Static).update("" if basket.lines else self.tr("checkout.no_items"))
        self.query_one("#note", Static).update(self.tr("checkout.note", note=self.sale.note) if self.sale.note else "")
        tax = basket.tax
        self.query_one("#tax", Static).update(self.tr("checkout.tax", amount=self.money(tax)) if tax.is_positive
                                              else "")
        paid = ""
        if self.ticket is not None and self.ticket.paid:
            paid = self.tr("checkout.partly_paid", paid=self.money(self.ticket.paid_amount),
                           total=self.money(self.ticket.total), left=self.money(self.ticket.remaining))
        self.query_one("#paid", Static).update(paid)
        self.show_total()

    def show_total(self) -> None:
        """The total and the customer's display: all that a key typed into the amount changes (the
        lines, the note, the tax and what is paid stay as `show_sale` drew them)."""
        self.query_one("#total", Static).update(f"{self.tr('checkout.total')}  {self.money(self.total())}")
        self.show_customer()

    def show_customer(self) -> None:
        customer = self.wp.customer
        if customer is None or customer.display is None:
            return
        total = self.total()
        customer.display.show(CustomerView("amount", self.money(total),
                                           self.tr("customer.items", count=self.sale.basket.count))
                              if total.is_positive else CustomerView("idle", message=self.tr("customer.welcome")))

    def on_amount_entry_changed(self, _: AmountEntry.Changed) -> None:
        if self.entry.amount.is_positive:  # typing clears a message; clearing the entry does not
            self.say("")
        self.show_total()

    def on_amount_entry_too_large(self, _: AmountEntry.TooLarge) -> None:
        self.say(self.tr("checkout.too_large"))

    def new_sale(self) -> None:
        self.sale = Sale(Basket(self.wp.service.currency))
        self.ticket = None
        self.selected = None
        self.entry.clear()
        self.show_sale()

    def sale_paid_late(self, ticket: Ticket, row: TxnRow) -> None:
        """A payment of `ticket` was approved after the cashier left its payment screen (a merchant code
        paid just before it closed, an answer on its way): unless the cashier has changed the sale
        since, it counts, so that Enter does not charge the customer a second time."""
        if ticket.sale is not self.sale:
            return
        ticket.record(row)
        if ticket.settled:
            self.new_sale()
            self.say(self.tr("checkout.paid_late"))
        else:
            self.ticket = ticket
            self.show_sale()
            self.say(self.tr("checkout.part_paid_late", amount=self.money(row.amount)))

    # -- the keys the amount entry hands over in order -------------------------------------------

    def on_amount_entry_command(self, command: AmountEntry.Command) -> None:
        command.stop()
        if command.key == "f2":
            self.open_item_dialog(command.minor or 0)
        else:
            self.charge(command.typed, command.minor)

    def holds_keys_after(self, key: str) -> bool:
        """A command key on the amount entry (Enter, F2): the keys typed after it wait at the app, not
        in the entry's own queue, where the screen could let the entry go while keys typed ahead of
        the command were still in that queue: they then went round the app again and came back
        behind the next command (a product code and Enter in a burst charged the sale without them)."""
        if key == "f3" or (key == "f9" and self.current_line() is not None and not self.ticket_paid()):
            return True  # the note or the item dialog opens: what is typed next goes there
        entry = self.focused  # the amount entry, once the screen is composed and has its focus
        return isinstance(entry, AmountEntry) and key in entry.command_keys and not entry.held

    def ticket_paid(self) -> bool:
        return self.ticket is not None and bool(self.ticket.paid)

    def let_keys_go(self, entry: AmountEntry, hold: int | None = None) -> None:
        """The entry takes keys again; the keys typed after its command (held by the app, or by the
        entry) go to what has the focus now, in order: after the focus moves (it moves on the app's
        next turn). `hold`: the app's hold to let go (default: the one in force now)."""
        entry.release()
        self.wp.release_keys_later(hold)

    def release_entry(self) -> None:
        """The entry takes keys again; the keys typed after the command go to what is on screen now."""
        self.let_keys_go(self.entry)

    def release_when_up(self, mounted: Awaitable[Any]) -> None:
        """Release the entry once the screen just pushed is mounted (and has its focus), so the keys
        typed after the command reach it, in order."""
        entry = self.entry
        hold = self.wp.key_hold()  # the keys held since the command (the screen may let them go first)

        async def release() -> None:
            await mounted
            await asyncio.sleep(0)
            self.let_keys_go(entry, hold)

        self.app.call_later(release)

    def action_charge(self) -> None:
        """Charge from the command palette (Enter itself comes through the amount entry)."""
        self.charge(self.entry.typed, self.entry.minor if len(self.entry.typed) <= AmountEntry.MAX_AMOUNT_DIGITS
                    else None)

    def charge(self, typed: str, minor: int | None) -> None:
        catalogue = self.wp.service.catalogue()
        entry = self.entry
        if typed and len(catalogue) and is_code(typed):
            product = catalogue.by_code(typed)
            entry.clear()
            if product is None:
                self.say(self.tr("checkout.no_such_code", code=typed))
            else:
                self.add_product(product)
            self.release_entry()
            return
        if minor is None:
            self.say(self.tr("checkout.too_large"))
            self.release_entry()
            return
        if self.ticket is not None and self.ticket.paid:
            if minor:
                self.say(self.tr("checkout.finish_first"))
                self.release_entry()
                return
            self.pay(self.ticket)
            return
        keyed = Money(minor, entry.currency)
        basket = self.sale.basket
        if keyed.is_positive and (basket.lines or self.wp.service.default_tax_rate()):
            try:
                basket, _ = basket.add(Line("", keyed, 1, self.wp.service.default_tax_rate()))
            except BasketError as exc:
                self.say(exc.message)
                self.release_entry()
                return
        total = basket.total if basket.lines else keyed
        if not total.is_positive:
            self.say(self.tr("checkout.enter_amount"))
            self.release_entry()
            return
        details: dict[str, Any] = dict(basket.details())
        if self.sale.note:
            details["note"] = self.sale.note
        self.pay(Ticket(self.sale, total, details))

    def pay(self, ticket: Ticket) -> None:
        from terminal.tui.screens.present import PresentScreen

        self.scan_stop.set()
        self.ticket = ticket

        def after(done: Ticket | bool | None) -> None:
            self._after_sale(ticket)

        self.release_when_up(self.app.push_screen(self.wp.make(PresentScreen, ticket, self.sale_paid_late), after))

    def _after_sale(self, ticket: Ticket) -> None:
        if ticket.settled:
            self.new_sale()
        elif ticket.paid:
            self.ticket = ticket  # partly paid: Enter takes the rest
            self.show_sale()
            self.say(self.tr("checkout.partly_paid_hint"))
        else:
            self.ticket = None
            self.show_sale()
        self.wp.release_keys()  # the keys typed after the result's Enter: into this sale, in order

    def action_abandon(self) -> None:
        """Give up the rest of a partly paid sale: its paid parts stay paid (refund them if the
        customer does not want them), the cashier is told which."""
        ticket = self.ticket
        if ticket is None or not ticket.paid:
            return
        refs = ", ".join(f"#{r.short_ref}" for r in ticket.paid)
        self.app.notify(self.tr("checkout.abandoned", paid=self.money(ticket.paid_amount), refs=refs),
                        severity="warning", timeout=60)
        self.new_sale()

    # -- items ----------------------------------------------------------------------------------

    def action_item(self) -> None:
        self.open_item_dialog(self.entry.minor if len(self.entry.typed) <= AmountEntry.MAX_AMOUNT_DIGITS else 0,
                              held=False)

    def open_item_dialog(self, minor: int, *, held: bool = True) -> None:
        from terminal.tui.screens.items import ItemChoice, ItemPrompt

        if self.locked():
            if held:
                self.release_entry()
            return
        keyed = Money(minor, self.entry.currency)
        catalogue = self.wp.service.catalogue()
        if not keyed.is_positive and not len(catalogue):
            self.say(self.tr("checkout.enter_amount"))
            if held:
                self.release_entry()
            return

        def chosen(choice: ItemChoice | None) -> None:
            if choice is None:
                return
            if choice.product is not None:
                before = self.sale.basket
                self.add_product(choice.product, choice.quantity)
                if self.sale.basket is not before:  # the product at its price took the place of the keyed
                    self.entry.clear()              # amount: left keyed, it was added again at Enter
                    self.show_sale()
                return
            try:
                line = Line(choice.name, keyed, choice.quantity, self.wp.service.default_tax_rate())
                self.sale.basket, self.selected = self.sale.basket.add(line)
            except BasketError as exc:
                self.say(exc.message)
                return
            self.entry.clear()
            self.show_sale()

        mounted = self.app.push_screen(self.wp.make(ItemPrompt, catalogue, keyed, self.money(keyed)),
                                       self.releasing(chosen))
        if held:
            self.release_when_up(mounted)

    # -- a product's code shown to the camera -----------------------------------------------------

    def start_item_scan(self) -> None:
        """Watch the camera for products' codes while this screen is up: in a thread of its own (not a
        Textual worker: it lasts as long as the screen, and workers are what "wait until the screen is
        idle" waits for), stopped when the screen is left or a payment starts."""
        service = self.wp.service
        if not len(service.catalogue()) or not service.can_take_payments():
            return
        self.scan_stop.set()  # a watch still running ends (its thread sees its own event set)
        stop = self.scan_stop = threading.Event()
        threading.Thread(target=self.watch_item_codes, args=(stop,), name="checkout-item-codes",
                         daemon=True).start()

    def watch_item_codes(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                code = self.wp.service.next_item_code(stop)
                if code is None:
                    return
                self.from_worker(self.item_code_seen, code)
        except WalletposError as exc:  # the camera or the checkout failed: the status bar shows the device
            log.warning("product codes from the camera stopped: %s", exc.message)

    def item_code_seen(self, code: str) -> None:
        product = self.wp.service.catalogue().by_code(code.strip())
        if product is None:
            self.say(self.tr("checkout.no_such_code", code=code[:20]))
            return
        self.add_product(product)

    # -- other screens ----------------------------------------------------------------------------

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
