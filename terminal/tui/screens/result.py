"""The result of a payment: one big word, the reason in plain words, how it was decided, the change
of a cash payment, what is left of a sale paid in parts, and the short reference.

Enter goes on: to a new sale once the sale is paid, to the next payment of a sale paid in parts,
and back to the same sale's payment after anything but an approval (a declined or unverified
payment is never dropped by a key meant for the next sale)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from terminal.i18n import reason
from terminal.receipts import short_reference
from terminal.tui.screens.base import BaseScreen
from terminal.tui.screens.sale import Ticket
from terminal.tui.widgets import Banner


@dataclass(frozen=True)
class SaleOutcome:
    """What the present screen hands to the result screen."""

    outcome: str  # approved | declined | need_cvm | try_another_card | tap_again | storage
    amount: Any  # Money
    reasons: tuple[str, ...] = ()
    auth_mode: str = "none"
    row: Any = None  # TxnRow when journaled
    masked_pan: str | None = None
    detail: str = ""  # extra words (a card or code error message)
    change: Any = None  # Money: the change of a cash payment
    no_pinpad: bool = False  # a PIN was needed and there is no PIN pad to take it


_BANNER = {
    "approved": ("outcome.approved", "approved"),
    "declined": ("outcome.declined", "declined"),
    "storage": ("outcome.declined", "declined"),
    "need_cvm": ("outcome.need_cvm", "attention"),
    "try_another_card": ("outcome.try_another_card", "attention"),
    "tap_again": ("outcome.tap_again", "attention"),
}

# how the answer was reached, in words that match the answer (a decline never reads "approved ...")
_HOW = {
    ("approved", "offline"): "outcome.approved_offline",
    ("approved", "online"): "outcome.decided_online",
    ("approved", "offline_fallback"): "outcome.decided_fallback",
    ("declined", "offline"): "outcome.declined_offline",
    ("declined", "online"): "outcome.declined_online",
    ("declined", "offline_fallback"): "outcome.declined_fallback",
}


class ResultScreen(BaseScreen):
    TITLE_KEY = "result.title"
    BINDINGS = [
        Binding("enter", "go_on('new_sale')", "action.new_sale"),
        Binding("enter", "go_on('next_payment')", "action.next_payment"),
        Binding("enter", "go_on('try_again')", "action.try_again"),
        Binding("r,R", "receipt", "action.receipt"),
        Binding("escape", "back", "action.back"),
    ]

    def __init__(self, result: SaleOutcome, ticket: Ticket | None = None) -> None:
        super().__init__()
        self.result = result
        self.ticket = ticket

    @property
    def approved(self) -> bool:
        return self.result.outcome == "approved"

    def go_on_label(self) -> str:
        if not self.approved:
            return "action.try_again"
        if self.ticket is not None and not self.ticket.settled:
            return "action.next_payment"
        return "action.new_sale"

    def body(self) -> ComposeResult:
        r = self.result
        key, kind = _BANNER.get(r.outcome, ("outcome.declined", "declined"))
        banner = Banner(id="banner")
        banner.show(self.tr(key), kind)
        with Vertical(classes="result"):
            yield banner
            yield Static(self.money(r.amount), classes="result-amount")
            if r.change is not None:
                yield Static(self.tr("result.change", amount=self.money(r.change)), id="change",
                             classes="result-change")
            yield Static(self._why(), id="why", classes="result-why")
            yield Static(self._how(), id="how", classes="hint")
            if self.ticket is not None and self.ticket.split:
                yield Static(self.tr("result.part", paid=self.money(self.ticket.paid_amount),
                                     total=self.money(self.ticket.total), left=self.money(self.ticket.remaining)),
                             id="part")
            if r.masked_pan:
                yield Static(self.tr("result.card", pan=r.masked_pan))
            if r.row is not None:
                yield Static(self.tr("result.reference", reference=short_reference(r.row)), id="reference",
                             classes="hint")
            yield Static(self.tr("result.go_on", action=self.tr(self.go_on_label())), classes="hint")

    def _why(self) -> str:
        r = self.result
        if r.outcome == "storage":
            return self.tr("result.storage")
        if r.no_pinpad:
            return self.tr("result.no_pinpad")
        codes = r.reasons
        if r.outcome == "approved":  # say only what the cashier should know about an approval
            codes = tuple(c for c in codes if c in ("offline_fallback",))
        words = [reason(self.wp.locale, code) for code in codes]
        if r.detail and not words:  # the reasons say it in the cashier's language; the detail is for the log
            words.insert(0, r.detail)
        return "; ".join(words)

    def _how(self) -> str:
        key = _HOW.get((self.result.outcome, self.result.auth_mode))
        return self.tr(key) if key else ""

    def on_mount(self) -> None:
        if self.result.outcome in ("approved", "declined", "storage"):
            self.wp.ring()
        self.wp.release_keys_later()  # the keys typed after the tender key (X) that brought this result

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action.startswith("demo_"):
            return super().check_action(action, parameters)
        if action == "receipt":
            return self.result.row is not None
        if action == "go_on":
            return f"action.{parameters[0]}" == self.go_on_label()
        return True

    def holds_keys_after(self, key: str) -> bool:
        """Enter (or Escape) goes on: after a paid sale the checkout comes back cleared for the next
        sale, else the payment screen takes the next payment; what the cashier types right after it
        goes there (`WalletposApp.hold_keys`), not to this screen on its way out."""
        return key in ("enter", "escape") and self.ticket is not None

    def action_go_on(self, _what: str = "") -> None:
        self.dismiss(self.approved)

    def action_back(self) -> None:
        self.dismiss(self.approved)

    def action_receipt(self) -> None:
        from terminal.tui.screens.receipt import ReceiptScreen

        if self.result.row is not None:
            self.app.push_screen(self.wp.make(ReceiptScreen, self.result.row))
