"""Transactions list with search; Enter shows the receipt, F5 refunds the selected sale."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from terminal.core.money import Money
from terminal.receipts import method_name, scheme_name, short_reference
from terminal.tui.screens.base import BaseScreen, screen_work


class TransactionsScreen(BaseScreen):
    TITLE_KEY = "txns.title"
    BINDINGS = [
        Binding("slash", "search", "action.search", key_display="/"),
        Binding("enter", "receipt", "action.receipt", priority=True),
        Binding("f5", "refund", "action.refund"),
        Binding("escape", "back", "action.back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Any] = []
        self.marks: dict[str, Any] = {}

    def body(self) -> ComposeResult:
        yield Input(placeholder=self.tr("txns.search"), id="search")
        table: DataTable[str] = DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="message", classes="message")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key in ("reference", "time", "kind", "amount", "method", "card", "result", "sync"):
            table.add_column(self.tr(f"txns.col.{key}"), key=key)
        table.focus()
        self.load("")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.load(event.value)

    def on_input_submitted(self, _: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    @screen_work(exclusive=True, group="txns")
    def load(self, text: str) -> None:
        service = self.wp.service
        rows = service.recent_transactions(200, search=text.strip() or None)
        marks = service.sale_marks(rows)
        self.from_worker(self.show, rows, marks)

    def result_text(self, row: Any) -> str:
        """approved / declined, and what became of an approved sale since (voided, refunded)."""
        mark = self.marks.get(row.id)
        if mark is not None and mark.voided:
            return self.tr("txns.voided")
        if mark is not None and mark.refunded:
            key = "txns.refunded_all" if mark.refunded >= row.amount.minor else "txns.refunded_part"
            return self.tr(key, amount=self.money(Money(mark.refunded, row.amount.currency)))
        return self.tr(f"decision.{row.decision}")

    def show(self, rows: list[Any], marks: dict[str, Any]) -> None:
        self.rows, self.marks = rows, marks
        table = self.query_one(DataTable)
        table.clear()
        locale = self.wp.locale
        for row in rows:
            table.add_row(
                short_reference(row, with_date=False),
                self.local_time(row.created_at, "%m-%d %H:%M"),
                self.tr(f"kind.{row.kind}"),
                self.money(row.amount),
                (scheme_name(locale, row.scheme) if row.scheme else method_name(locale, row.method))[:12],
                f"*{row.masked_pan[-4:]}" if row.masked_pan else "",
                self.result_text(row),
                self.tr(f"sync.{row.sync_state}"),
                key=row.id,
            )
        self.query_one("#message", Static).update("" if rows else self.tr("txns.empty"))

    def selected(self) -> Any:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_receipt(self) -> None:
        from terminal.tui.screens.receipt import ReceiptScreen

        if self.focused is not None and self.focused.id == "search":
            self.query_one(DataTable).focus()
            return
        row = self.selected()
        if row is not None:
            self.app.push_screen(self.wp.make(ReceiptScreen, row))

    def action_refund(self) -> None:
        from terminal.tui.screens.refund import RefundScreen

        row = self.selected()
        reference = f"{row.business_date.isoformat()}/{row.short_ref}" if row is not None and row.short_ref else (
            row.id if row is not None else "")
        self.app.push_screen(self.wp.make(RefundScreen, reference),
                             lambda _: self.load(self.query_one("#search", Input).value))

