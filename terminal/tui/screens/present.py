"""Present card or code: waits (in a worker) for a tap or a scanned code, or shows the merchant QR; takes
cash; pays a sale in parts (split tender); asks the customer's PIN on the PIN pad.

The wait runs in a thread worker through `service.take_payment(...)`, which races the reader and
the camera and returns one result; Escape cancels it. The screen only shows progress and hands the
result to the result screen. A payment that needs the customer's PIN goes to the PIN pad: the
customer types it there, the pad seals it to the backend's key, and this screen only says that a
PIN was entered. Cash (C) and a part payment (S) wait until the card and camera wait has ended, so
a card approved at the same moment is never paid twice."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from drivers.customerdisplay import CustomerView
from drivers.pinpad import PinRequest
from terminal.codepay import MerchantCodeUnavailable
from terminal.core.money import Money
from terminal.errors import WalletposError
from terminal.journal import TxnRow
from terminal.tui.qrtext import qr_lines
from terminal.tui.screens.base import screen_work
from terminal.tui.screens.democustomer import DEMO_CUSTOMER_BINDINGS, DemoCustomerKeys
from terminal.tui.screens.result import ResultScreen, SaleOutcome
from terminal.tui.screens.sale import Ticket

log = logging.getLogger("walletpos.tui")


class PresentScreen(DemoCustomerKeys):
    TITLE_KEY = "present.title"
    BINDINGS = [
        Binding("q,Q", "merchant_qr", "action.merchant_qr"),
        Binding("c,C", "cash", "action.cash"),
        Binding("x,X", "cash_exact", "action.cash_exact"),
        Binding("s,S", "split", "action.split"),
        Binding("escape", "cancel", "action.cancel"),
        *DEMO_CUSTOMER_BINDINGS,
    ]

    def __init__(self, ticket: Ticket, on_paid_late: Callable[[Ticket, TxnRow], None] | None = None) -> None:
        super().__init__()
        self.ticket = ticket
        self.amount: Money = ticket.remaining  # what this payment asks: the rest, or a part of it
        self.on_paid_late = on_paid_late  # the checkout counts a payment that came after the cashier left
        self.cancel_event = threading.Event()  # stops the card/camera wait (and the PIN pad)
        self.qr_cancel = threading.Event()  # stops the merchant-code wait
        self.showing_qr = False
        self.cashier_cancelled = False
        self.result_up = False
        self.waiting = False  # a card/camera wait (or the PIN pad) is running
        self.pending_cash: Money | None = None  # cash handed over, taken once the wait has ended
        self.next_part: Money | None = None  # a part amount to ask for once the wait has ended
        self.left: str | None = None  # how the screen was left: "cancelled" or "paid"

    def body(self) -> ComposeResult:
        with Horizontal(classes="present"):
            with Vertical(classes="present-left"):
                yield Static(self.money(self.amount), id="amount", classes="present-amount")
                yield Static("", id="part", classes="hint")
                yield Static(self.tr("present.prompt"), id="prompt", classes="present-prompt")
                yield Static("", id="devices", classes="message")
                yield Static("", id="message", classes="message")
                yield Static(self.tr("present.tender_keys"), id="tender-keys", classes="hint")
            yield Static("", id="qr", classes="qr")
        if self.wp.demo is not None:
            yield Static(self.tr("demo.keys"), id="demo-keys", classes="hint")

    def on_mount(self) -> None:
        self.show_part()
        self.watch_devices()
        self.set_interval(0.5, self.watch_devices)
        self.show_customer(CustomerView("amount", self.money(self.amount), self.tr("customer.present")))
        if self.wp.service.can_take_payments():
            self.wait_for_payment()

    def show_customer(self, view: CustomerView) -> None:
        customer = self.wp.customer
        if customer is not None and customer.display is not None:
            customer.display.show(view)

    def show_part(self) -> None:
        self.query_one("#amount", Static).update(self.money(self.amount))
        ticket = self.ticket
        part = ""
        if ticket.paid or self.amount != ticket.remaining:
            part = self.tr("present.part", amount=self.money(self.amount), total=self.money(ticket.total),
                           paid=self.money(ticket.paid_amount))
        self.query_one("#part", Static).update(part)

    def watch_devices(self) -> None:
        """What the cashier must know about the reader and the camera now (a pulled reader reads no
        tap: say so instead of asking for one)."""
        reader, camera = self.wp.service.device_states()
        gone = ("absent", "error", "none")
        if reader in gone and camera in gone:
            text = self.tr("present.no_devices")
        elif reader in ("absent", "error"):
            text = self.tr("present.reader_unplugged")
        elif camera in ("absent", "error"):
            text = self.tr("present.camera_unavailable")
        else:
            text = ""
        devices = self.query_one("#devices", Static)
        if str(devices.render()) != text:
            devices.update(text)

    def on_unmount(self) -> None:
        self._stop_waits()  # a wait still running (app closing, screen replaced) ends with the screen

    def _stop_waits(self) -> None:
        self.cancel_event.set()
        self.qr_cancel.set()

    # -- the wait -------------------------------------------------------------------------------

    def announce(self, key: str, result: Any) -> None:
        """A payment approved outside this screen's result (while a result was shown, after the cashier
        left, or just before a merchant code was closed): journaled, and the cashier is told."""
        row = result.row
        self.app.notify(self.tr(key, amount=self.money(result.amount), reference=f"#{row.short_ref}"),
                        severity="warning", timeout=60)
        if self.cashier_cancelled and self.on_paid_late is not None and row is not None:
            # this sale, which the cashier gave up, is paid: it must not be charged again
            self.on_paid_late(self.ticket, row)

    def progress(self, key: str, **values: object) -> None:
        """Called from the worker thread with an i18n key ("present.reading", ...)."""
        self.from_worker(self.say_key, key, values)

    def say_key(self, key: str, values: dict[str, object]) -> None:
        self.say(self.tr(key, **values))
        if key == "present.reading":
            self.show_customer(CustomerView("processing", self.money(self.amount), self.tr("customer.processing")))

    def restart_wait(self) -> None:
        self.cancel_event = threading.Event()
        if self.wp.service.can_take_payments():
            self.wait_for_payment()

    @screen_work(exclusive=True, group="present")
    def wait_for_payment(self) -> None:
        self.waiting = True
        try:
            operator = self.wp.operator.id if self.wp.operator else None
            note = str(self.ticket.details.get("note") or "") if not self.ticket.paid else ""
            details = {k: v for k, v in self.ticket.part_details(self.amount).items() if k != "note"}
            result = self.wp.service.take_payment(self.amount, operator=operator, cancel=self.cancel_event,
                                                  progress=self.progress, note=note, details=details)
        finally:
            self.waiting = False
        self.from_worker(self.finish, result, when_gone=self.finish_after_leaving)

    def finish(self, result: Any) -> None:
        if result.outcome == "cancelled":
            # the wait was stopped: by the cashier (leave, cash, a part amount), or because the other
            # wait brought a result (then that result is on screen, even when it came after the
            # cashier's Escape: the customer paid, and the cashier must see it)
            if self.cashier_cancelled and self.is_current and not self.result_up and self.left is None:
                self.leave(False)
            elif self.pending_cash is not None and not self.result_up and self.left is None:
                self.take_cash(self.pending_cash)
            elif self.next_part is not None and not self.result_up and self.left is None:
                self.amount, self.next_part = self.next_part, None
                self.show_part()
                self.restart_wait()
            return
        if self.result_up or self.left is not None:
            # an answer that was on its way when a result was shown, or when the screen was left: both
            # payments are journaled; the cashier is told
            log.warning("a payment arrived %s: %s %s",
                        "after the sale was cancelled" if self.left == "cancelled" else "while a result was shown",
                        result.outcome, result.row.id if result.row else "")
            if result.row is not None and result.row.approved:
                self.announce("present.paid_after_cancel" if self.left == "cancelled" else "present.second_payment",
                              result)
            return
        if self.pending_cash is not None or self.next_part is not None:
            if result.row is not None and result.row.approved:  # the card was quicker than the cash
                self.app.notify(self.tr("present.card_first"), severity="warning", timeout=30)
            self.pending_cash = self.next_part = None
        if result.outcome in ("not_a_payment_code", "code_refused", "no_devices"):
            # nothing was paid: say why and keep waiting for a card or another code (or leave, when
            # the cashier pressed Escape meanwhile)
            if self.cashier_cancelled:
                self.leave(False)
                return
            from terminal.i18n import reason

            self.say(reason(self.wp.locale, result.reasons[0]) if result.reasons
                     else self.tr("present.code_not_payment"))
            self.restart_wait()
            return
        if result.outcome == "need_cvm" and result.pending_cvm is not None:
            customer = self.wp.customer
            if customer is not None and customer.pinpad is not None and not self.cashier_cancelled:
                self.collect_pin()
                return
            self.wp.service.drop_pending_pin()
        self.show_result(SaleOutcome(outcome=result.outcome, amount=self.amount, reasons=tuple(result.reasons),
                                     auth_mode=result.auth_mode, row=result.row, masked_pan=result.masked_pan,
                                     detail=result.detail, no_pinpad=result.outcome == "need_cvm"))

    def show_result(self, outcome: SaleOutcome) -> None:
        if outcome.row is not None and outcome.row.approved:
            self.ticket.record(outcome.row)
        self.result_up = True
        self._stop_waits()  # the other wait (card/camera or merchant code) ends; a shown code is closed
        if outcome.outcome in ("approved", "declined", "storage"):
            approved = outcome.outcome == "approved"
            self.show_customer(CustomerView("result", self.money(outcome.amount),
                                            self.tr("outcome.approved" if approved else "outcome.declined"),
                                            approved))
        self.app.push_screen(self.wp.make(ResultScreen, outcome, self.ticket), self.after_result)

    def finish_after_leaving(self, result: Any) -> None:
        """The wait's answer came when the screen was gone (Escape, sign-out, another screen): never a
        result screen over whatever is shown now; an approval is told (`finish`)."""
        if self.left is None:
            self.left = "cancelled"
        self.finish(result)

    def leave(self, paid: bool) -> None:
        self.left = "paid" if paid else "cancelled"
        if not paid:
            self.show_customer(CustomerView("idle", message=self.tr("customer.welcome")))
        self.dismiss(self.ticket)

    def after_result(self, answer: Any) -> None:
        self.result_up = False
        self.cancel_event, self.qr_cancel = threading.Event(), threading.Event()
        if self.showing_qr:
            self.hide_qr()
        if self.ticket.settled:
            self.leave(True)
            return
        if self.cashier_cancelled:
            # the result (a decline, say) came after the cashier pressed Escape: now leave the sale
            self.leave(False)
            return
        # declined, try another card, tap again, or a part paid: wait for the next payment of this sale
        self.amount = self.ticket.remaining
        self.show_part()
        self.say("")
        self.show_customer(CustomerView("amount", self.money(self.amount), self.tr("customer.present")))
        self.restart_wait()
        self.wp.release_keys()  # the keys typed after the result's Enter: for this payment screen

    # -- the customer's PIN, on the PIN pad ------------------------------------------------------

    def collect_pin(self) -> None:
        self.query_one("#prompt", Static).update(self.tr("present.pin_prompt"))
        self.say(self.tr("present.pin_waiting"))
        self.show_customer(CustomerView("pin", self.money(self.amount), self.tr("customer.enter_pin")))
        self.read_pin()

    @screen_work(exclusive=True, group="present")
    def read_pin(self) -> None:
        service, customer = self.wp.service, self.wp.customer
        assert customer is not None and customer.pinpad is not None
        binding = service.pin_binding()
        if binding is None:  # not enrolled: the backend could not check the PIN
            service.drop_pending_pin()
            self.from_worker(self.pin_not_possible)
            return
        key, bound = binding
        self.waiting = True
        try:
            entry = customer.pinpad.read_pin(PinRequest(self.money(self.amount), key, bound), self.cancel_event)
        finally:
            self.waiting = False
        if entry.outcome != "entered" or entry.pin_block is None:
            service.drop_pending_pin()
            self.from_worker(self.pin_not_entered, entry.outcome, when_gone=None)
            return
        self.from_worker(self.pin_entered)
        result = service.retry_with_pin_block(self.cancel_event, entry.pin_block)
        self.from_worker(self.finish, result, when_gone=self.finish_after_leaving)

    def pin_entered(self) -> None:
        self.say(self.tr("present.pin_entered"))
        self.show_customer(CustomerView("processing", self.money(self.amount), self.tr("customer.processing")))

    def pin_not_entered(self, outcome: str) -> None:
        self.query_one("#prompt", Static).update(self.tr("present.prompt"))
        if self.cashier_cancelled:
            self.leave(False)
            return
        self.say(self.tr("present.pin_cancelled" if outcome == "cancelled" else "present.pin_timeout"))
        self.show_customer(CustomerView("amount", self.money(self.amount), self.tr("customer.present")))
        self.restart_wait()

    def pin_not_possible(self) -> None:
        self.show_result(SaleOutcome(outcome="need_cvm", amount=self.amount, reasons=("pin_not_verifiable",)))

    # -- cash and parts ---------------------------------------------------------------------------

    def holds_keys_after(self, key: str) -> bool:
        """C and S open an amount dialog, X takes the cash and shows the result: the keys typed right
        after them wait for that dialog or result (they reached this screen on its way out, and an
        Enter among them answered the dialog with its default when it came back to the app)."""
        if self.showing_qr or self.result_up or self.left is not None:
            return False
        if key in ("c", "C", "x", "X"):
            return self.pending_cash is None
        return key in ("s", "S")

    def action_cash(self) -> None:
        from terminal.tui.screens.dialogs import AmountPrompt

        if self.showing_qr or self.result_up or self.pending_cash is not None:
            if self.showing_qr:
                self.say(self.tr("present.qr_first"))
            return

        self.app.push_screen(self.wp.make(AmountPrompt, self.tr("present.cash_title"),
                                          self.tr("present.cash_hint", amount=self.money(self.amount)),
                                          self.amount), self.releasing(self.cash_handed))

    def action_cash_exact(self) -> None:
        """The customer hands over exactly the amount asked, in cash (no change)."""
        if self.showing_qr or self.result_up or self.pending_cash is not None:
            if self.showing_qr:
                self.say(self.tr("present.qr_first"))
            return
        self.cash_handed(self.amount)

    def cash_handed(self, tendered: Money | None) -> None:
        if tendered is None or self.left is not None or self.pending_cash is not None:
            return
        self.pending_cash = tendered
        if self.waiting:
            self.cancel_event.set()  # the cash is taken once the card/camera wait has ended
        else:
            self.take_cash(tendered)

    def take_cash(self, tendered: Money) -> None:
        self.pending_cash = None
        amount = min(self.amount, tendered, key=lambda m: m.minor)
        self.pay_cash(amount, tendered)

    @screen_work(exclusive=True, group="present")
    def pay_cash(self, amount: Money, tendered: Money) -> None:
        operator = self.wp.operator.id if self.wp.operator else None
        details = self.ticket.part_details(amount)
        row = self.wp.service.pay_cash(amount, tendered, operator=operator, details=details)
        self.from_worker(self.cash_taken, row, tendered, when_gone=None)

    def cash_taken(self, row: TxnRow, tendered: Money) -> None:
        change = tendered - row.amount
        self.show_result(SaleOutcome(outcome="approved", amount=row.amount, reasons=(), auth_mode="none", row=row,
                                     change=change))

    def action_split(self) -> None:
        from terminal.tui.screens.dialogs import AmountPrompt

        if self.showing_qr or self.result_up:
            if self.showing_qr:
                self.say(self.tr("present.qr_first"))
            return
        rest = self.ticket.remaining
        one_minor = Money(1, rest.currency)

        def chosen(part: Money | None) -> None:
            if part is None or self.left is not None or part == self.amount:
                return
            if self.waiting:
                self.next_part = part
                self.cancel_event.set()
            else:
                self.amount = part
                self.show_part()

        self.app.push_screen(self.wp.make(AmountPrompt, self.tr("present.split_title"),
                                          self.tr("present.split_hint", rest=self.money(rest)), rest,
                                          at_least=one_minor, at_most=rest), self.releasing(chosen))

    # -- merchant-presented QR ------------------------------------------------------------------

    def action_merchant_qr(self) -> None:
        if not self.wp.service.can_take_payments() or self.showing_qr or self.result_up:
            return
        self.showing_qr = True
        self.show_merchant_qr()

    @screen_work(exclusive=True, group="merchant_qr")
    def show_merchant_qr(self) -> None:
        service = self.wp.service
        operator = self.wp.operator.id if self.wp.operator else None
        try:
            payload = service.show_merchant_qr(self.amount, operator,
                                               details=self.ticket.part_details(self.amount))
        except MerchantCodeUnavailable as exc:  # offline: the backend must know a code before it is shown
            log.info("merchant code not shown: %s", exc.message)
            self.showing_qr = False
            self.from_worker(self.say_key, "present.qr_needs_network", {})
            return
        except WalletposError as exc:  # not recorded, so not shown: a payment with it could not be recorded
            self.showing_qr = False
            self.from_worker(self.say, exc.message)
            return
        self.from_worker(self._draw_qr, payload)
        result = service.wait_merchant_qr(payload, cancel=self.qr_cancel, operator=operator)
        if result is not None:
            self.from_worker(self.finish, result, when_gone=self.finish_after_leaving)
            return
        # the code left the screen unpaid (cancelled, paid by card, screen closed): close it at the
        # backend; a customer who paid it just before is not lost
        late = service.close_merchant_qr(payload, operator)
        if late is not None and late.row is not None:
            self.from_worker(self.announce, "present.qr_paid_late", late, when_gone=self.announce)

    def _draw_qr(self, payload: Any) -> None:
        """The code, whole with its quiet zone: the screen's title, the tender keys and the demo's key
        hint make room for it (a code cut off at the bottom cannot be scanned)."""
        self.add_class("showing-qr")
        self.query_one("#qr", Static).update(Text("\n".join(qr_lines(payload.payload, error_correction="L",
                                                                      quiet=1, quiet_x=2)), no_wrap=True))
        self.query_one("#prompt", Static).update(self.tr("present.qr_prompt"))
        self.say(self.tr("present.qr_waiting"))
        self.show_customer(CustomerView("amount", self.money(self.amount), self.tr("customer.scan_qr")))

    def hide_qr(self) -> None:
        self.showing_qr = False
        self.remove_class("showing-qr")
        self.query_one("#qr", Static).update("")
        self.query_one("#prompt", Static).update(self.tr("present.prompt"))

    def action_cancel(self) -> None:
        self.cashier_cancelled = True
        self._stop_waits()
        if not self.waiting or not self.wp.service.can_take_payments():
            self.leave(False)
