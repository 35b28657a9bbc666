"""The result of a sale: one big word, the reason in plain words, how it was decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from terminal.i18n import reason
from terminal.tui.screens.base import BaseScreen
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
    retry: Any = field(default=None, compare=False)  # callable(pin) -> SaleOutcome, for need_cvm


_BANNER = {
    "approved": ("outcome.approved", "approved"),
    "declined": ("outcome.declined", "declined"),
    "storage": ("outcome.declined", "declined"),
    "need_cvm": ("outcome.need_cvm", "attention"),
    "try_another_card": ("outcome.try_another_card", "attention"),
    "tap_again": ("outcome.tap_again", "attention"),
}


class ResultScreen(BaseScreen):
    TITLE_KEY = "result.title"
    BINDINGS = [
        Binding("enter", "new_sale", "action.new_sale", priority=True),
        Binding("r,R", "receipt", "action.receipt"),
        Binding("p,P", "enter_pin", "action.enter_pin"),
        Binding("escape", "back", "action.back"),
    ]

    def __init__(self, result: SaleOutcome) -> None:
        super().__init__()
        self.result = result

    def body(self) -> ComposeResult:
        r = self.result
        key, kind = _BANNER.get(r.outcome, ("outcome.declined", "declined"))
        banner = Banner(id="banner")
        banner.show(self.tr(key), kind)
        with Vertical(classes="result"):
            yield banner
            yield Static(self.money(r.amount), classes="result-amount")
            yield Static(self._why(), id="why", classes="result-why")
            yield Static(self._how(), id="how", classes="hint")
            if r.masked_pan:
                yield Static(self.tr("result.card", pan=r.masked_pan))
            if r.row is not None:
                yield Static(self.tr("result.reference", reference=r.row.id), classes="hint")

    def _why(self) -> str:
        r = self.result
        if r.outcome == "storage":
            return self.tr("result.storage")
        codes = r.reasons
        if r.outcome == "approved":  # say only what the cashier should know about an approval
            codes = tuple(c for c in codes if c in ("offline_fallback",))
        words = [reason(self.wp.locale, code) for code in codes]
        if r.detail and not words:  # the reasons say it in the cashier's language; the detail is for the log
            words.insert(0, r.detail)
        return "; ".join(words)

    def _how(self) -> str:
        mode = self.result.auth_mode
        if self.result.outcome not in ("approved", "declined"):
            return ""
        return {"offline": self.tr("outcome.decided_offline"), "online": self.tr("outcome.decided_online"),
                "offline_fallback": self.tr("outcome.decided_fallback")}.get(mode, "")

    def on_mount(self) -> None:
        if self.result.outcome in ("approved", "declined", "storage"):
            self.wp.ring()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action.startswith("demo_"):
            return super().check_action(action, parameters)
        if action == "receipt":
            return self.result.row is not None
        if action == "enter_pin":
            return self.result.outcome == "need_cvm" and self.result.retry is not None
        return True

    def action_new_sale(self) -> None:
        self.dismiss(True)

    def action_back(self) -> None:
        self.dismiss(self.result.outcome == "approved")

    def action_receipt(self) -> None:
        from terminal.tui.screens.receipt import ReceiptScreen

        if self.result.row is not None:
            self.app.push_screen(self.wp.make(ReceiptScreen, self.result.row))

    def action_enter_pin(self) -> None:
        from terminal.tui.screens.dialogs import PinPrompt

        if self.result.retry is None:
            return

        def entered(pin: str | None) -> None:
            if pin:
                self.dismiss(("retry", pin))

        self.app.push_screen(self.wp.make(PinPrompt, self.tr("result.pin_prompt"), self.tr("result.pin_hint")),
                             entered)
