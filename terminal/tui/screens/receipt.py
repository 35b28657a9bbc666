"""A receipt on screen, saved as a text file, and as an e-receipt QR code."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from terminal.receipts import e_receipt_qr_text
from terminal.tui.qrtext import qr_lines
from terminal.tui.screens.base import BaseScreen, screen_work


class ReceiptScreen(BaseScreen):
    TITLE_KEY = "receipt.title"
    BINDINGS = [Binding("s,S", "save", "action.save"), Binding("escape", "back", "action.back")]

    def __init__(self, row: Any) -> None:
        super().__init__()
        self.row = row

    def body(self) -> ComposeResult:
        with Horizontal(classes="receipt"):
            with VerticalScroll(classes="receipt-text"):
                yield Static("", id="receipt")
            with Vertical(classes="receipt-qr"):
                yield Static(Text("\n".join(qr_lines(e_receipt_qr_text(self.row))), no_wrap=True), classes="qr")
                yield Static(self.tr("receipt.qr_hint"), classes="hint")
        yield Static("", id="message", classes="message")

    def on_mount(self) -> None:
        self.load()

    @screen_work(exclusive=True, group="receipt_text")
    def load(self) -> None:
        lines = self.wp.service.receipt_lines(self.row, self.wp.locale)
        self.from_worker(self.show, lines)

    def show(self, lines: list[str]) -> None:
        self.query_one("#receipt", Static).update(Text("\n".join(lines), no_wrap=True, overflow="ellipsis"))


    def action_save(self) -> None:
        self.save()

    @screen_work(exclusive=True, group="receipt")
    def save(self) -> None:
        path = self.wp.service.save_receipt(self.row, self.wp.locale)
        self.from_worker(self.saved, path, when_gone=self.saved_after_leaving)

    def saved(self, path: Any) -> None:
        self.query_one("#message", Static).update(self.tr("receipt.saved", path=path))

    def saved_after_leaving(self, path: Any) -> None:
        self.app.notify(self.tr("receipt.saved", path=path))
