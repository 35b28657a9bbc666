"""Present card or code: waits (in a worker) for a tap or a scanned code, or shows the merchant QR.

The wait runs in a thread worker through `service.take_payment(...)`, which races the reader and
the camera and returns one result; Escape cancels it. The screen only shows progress
and hands the result to the result screen."""

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

from terminal.core.money import Money
from terminal.errors import WalletposError
from terminal.tui.qrtext import qr_lines
from terminal.tui.screens.base import BaseScreen, screen_work
from terminal.tui.screens.result import ResultScreen, SaleOutcome

log = logging.getLogger("walletpos.tui")


class PresentScreen(BaseScreen):
    TITLE_KEY = "present.title"
    BINDINGS = [
        Binding("q,Q", "merchant_qr", "action.merchant_qr"),
        Binding("escape", "cancel", "action.cancel"),
        Binding("w,W", "demo_code('real_name')", "action.demo_signed_code", show=False),
        Binding("u,U", "demo_code('unverified')", "action.demo_unverified_code", show=False),
        Binding("n,N", "demo_code('numeric')", "action.demo_numeric_code", show=False),
        Binding("p,P", "demo_pay_code", "action.demo_pay_code", show=False),
        *(Binding(str(i + 1), f"demo_tap({i})", f"action.demo_tap_{i + 1}", show=False) for i in range(9)),
    ]

    def __init__(self, amount: Money, sale: Any = None,
                 on_paid_late: Callable[[Any, Money], None] | None = None) -> None:
        super().__init__()
        self.amount = amount
        self.sale = sale
        self.on_paid_late = on_paid_late  # the checkout clears a sale paid after the cashier left it
        self.cancel_event = threading.Event()  # stops the card/camera wait
        self.qr_cancel = threading.Event()  # stops the merchant-code wait
        self.showing_qr = False
        self.cashier_cancelled = False
        self.result_up = False
        self.left: str | None = None  # how the screen was left: "cancelled" or "paid"

    def body(self) -> ComposeResult:
        with Horizontal(classes="present"):
            with Vertical(classes="present-left"):
                yield Static(self.money(self.amount), classes="present-amount")
                yield Static(self.tr("present.prompt"), id="prompt", classes="present-prompt")
                yield Static("", id="message", classes="message")
            yield Static("", id="qr", classes="qr")
        if self.wp.demo is not None:
            yield Static(self.tr("demo.keys"), id="demo-keys", classes="hint")

    def on_mount(self) -> None:
        if not self.wp.service.can_take_payments():
            self.say(self.tr("present.no_devices"))
            return
        self.wait_for_payment()

    def say(self, text: str) -> None:
        self.query_one("#message", Static).update(text)

    def on_unmount(self) -> None:
        self._stop_waits()  # a wait still running (app closing, screen replaced) ends with the screen

    def _stop_waits(self) -> None:
        self.cancel_event.set()
        self.qr_cancel.set()

    # -- the wait -------------------------------------------------------------------------------

    def announce(self, key: str, result: Any) -> None:
        """A payment approved outside this screen's result (while a result was shown, after the cashier
        left, or just before a merchant code was closed): journaled, and the cashier is told."""
        self.app.notify(self.tr(key, amount=self.money(result.amount), reference=result.row.id[:8]),
                        severity="warning", timeout=60)
        if self.cashier_cancelled and self.on_paid_late is not None:
            # this sale, which the cashier gave up, is paid: it must not be charged again
            self.on_paid_late(self.sale, self.amount)

    def progress(self, key: str, **values: object) -> None:
        """Called from the worker thread with an i18n key ("present.reading", ...)."""
        self.from_worker(self.say_key, key, values)

    def say_key(self, key: str, values: dict[str, object]) -> None:
        self.say(self.tr(key, **values))

    @screen_work(exclusive=True, group="present")
    def wait_for_payment(self) -> None:
        operator = self.wp.operator.id if self.wp.operator else None
        result = self.wp.service.take_payment(self.amount, operator=operator, cancel=self.cancel_event,
                                              progress=self.progress, note=getattr(self.sale, "note", ""))
        self.from_worker(self.finish, result, when_gone=self.finish_after_leaving)

    def finish(self, result: Any) -> None:
        if result.outcome == "cancelled":
            # the wait was stopped: by the cashier (leave), or because the other wait brought a result
            # (then that result is on screen, even when it came after the cashier's Escape: the
            # customer paid, and the cashier must see it)
            if self.cashier_cancelled and self.is_current and not self.result_up and self.left is None:
                self.leave(False)
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
        if result.outcome in ("not_a_payment_code", "code_refused", "no_devices"):
            # nothing was paid: say why and keep waiting for a card or another code (or leave, when
            # the cashier pressed Escape meanwhile)
            if self.cashier_cancelled:
                self.leave(False)
                return
            from terminal.i18n import reason

            self.say(reason(self.wp.locale, result.reasons[0]) if result.reasons
                     else self.tr("present.code_not_payment"))
            self.cancel_event = threading.Event()
            self.wait_for_payment()
            return
        outcome = SaleOutcome(outcome=result.outcome, amount=self.amount, reasons=tuple(result.reasons),
                              auth_mode=result.auth_mode, row=result.row, masked_pan=result.masked_pan,
                              detail=result.detail, retry=result.pending_cvm)
        self.result_up = True
        self._stop_waits()  # the other wait (card/camera or merchant code) ends; a shown code is closed
        self.app.push_screen(self.wp.make(ResultScreen, outcome), self.after_result)

    def finish_after_leaving(self, result: Any) -> None:
        """The wait's answer came when the screen was gone (Escape, sign-out, another screen): never a
        result screen over whatever is shown now; an approval is told (`finish`)."""
        if self.left is None:
            self.left = "cancelled"
        self.finish(result)

    def leave(self, paid: bool) -> None:
        self.left = "paid" if paid else "cancelled"
        self.dismiss(paid)

    def after_result(self, answer: Any) -> None:
        self.result_up = False
        self.cancel_event, self.qr_cancel = threading.Event(), threading.Event()
        if self.showing_qr:
            self.showing_qr = False
            self.query_one("#qr", Static).update("")
            self.query_one("#prompt", Static).update(self.tr("present.prompt"))
        if isinstance(answer, tuple) and answer[0] == "retry":
            self.cashier_cancelled = False  # the cashier chose to go on with this sale
            self.retry_with_pin(answer[1])
            return
        if answer is True:
            self.leave(True)
            return
        if self.cashier_cancelled:
            # the result (a decline, say) came after the cashier pressed Escape: now leave the sale
            self.leave(False)
            return
        # declined, try another card, tap again: wait for the next presentation of this sale
        self.say("")
        self.wait_for_payment()

    @screen_work(exclusive=True, group="present")
    def retry_with_pin(self, pin: str) -> None:
        result = self.wp.service.retry_with_pin(self.cancel_event, pin)
        self.from_worker(self.finish, result, when_gone=self.finish_after_leaving)

    # -- merchant-presented QR ------------------------------------------------------------------

    def action_merchant_qr(self) -> None:
        if not self.wp.service.can_take_payments() or self.showing_qr:
            return
        self.showing_qr = True
        self.show_merchant_qr()

    @screen_work(exclusive=True, group="merchant_qr")
    def show_merchant_qr(self) -> None:
        service = self.wp.service
        operator = self.wp.operator.id if self.wp.operator else None
        try:
            payload = service.show_merchant_qr(self.amount, operator)
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
        self.query_one("#qr", Static).update(Text("\n".join(qr_lines(payload.payload, error_correction="L")),
                                                  no_wrap=True))
        self.query_one("#prompt", Static).update(self.tr("present.qr_prompt"))
        self.say(self.tr("present.qr_waiting"))

    def action_demo_code(self, kind: str) -> None:
        self.demo_code(kind)

    @screen_work(group="demo")
    def demo_code(self, kind: str) -> None:
        demo = self.wp.demo
        if demo is None:
            return
        try:
            if kind == "numeric":
                demo.show_numeric_code()
            else:
                demo.show_signed_code(kind)
        except WalletposError as exc:
            self.from_worker(self.say, exc.message)

    def action_demo_pay_code(self) -> None:
        self.demo_pay_code()

    @screen_work(group="demo")
    def demo_pay_code(self) -> None:
        demo = self.wp.demo
        if demo is None:
            return
        try:
            demo.pay_merchant_code()
        except WalletposError as exc:
            self.from_worker(self.say, exc.message)

    def action_demo_tap(self, index: int) -> None:
        demo = self.wp.demo
        if demo is None:
            return
        try:
            demo.tap_card(index)
        except WalletposError as exc:
            self.say(exc.message)

    def action_cancel(self) -> None:
        self.cashier_cancelled = True
        self._stop_waits()
        if not self.wp.service.can_take_payments():
            self.leave(False)
