"""Day close: the X-report on screen; F9 closes the batch (Z-report, JSON and text files)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from terminal.receipts import report_lines
from terminal.tui.screens.base import BaseScreen, screen_work


class DayCloseScreen(BaseScreen):
    TITLE_KEY = "dayclose.title"
    BINDINGS = [Binding("f9", "close_batch", "action.close_batch"), Binding("escape", "back", "action.back")]

    def body(self) -> ComposeResult:
        yield Static(self.tr("dayclose.hint"), classes="hint")
        with VerticalScroll(classes="report"):
            yield Static("", id="report")
        yield Static("", id="message", classes="message")

    def on_mount(self) -> None:
        self.load()

    @screen_work(exclusive=True, group="report")
    def load(self) -> None:
        report = self.wp.service.day_report()
        self.from_worker(self.show, report)

    def show(self, report: Any) -> None:
        lines = report_lines(report, self.wp.service.config, self.wp.locale)
        self.query_one("#report", Static).update(Text("\n".join(lines), no_wrap=True))

    def action_close_batch(self) -> None:
        from terminal.tui.screens.dialogs import SupervisorPrompt

        operator = self.wp.operator
        if operator is not None and operator.role == "supervisor":
            self.close_batch(None, None)
            return

        def approved(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self.close_batch(*answer)

        self.app.push_screen(self.wp.make(SupervisorPrompt), approved)

    @screen_work(exclusive=True, group="report")
    def close_batch(self, supervisor: str | None, pin: str | None) -> None:
        service = self.wp.service
        if supervisor is not None:
            check = service.operators.check(supervisor, pin or "", now=service.clock(), purpose="day_close",
                                            require_role="supervisor")
            if not check.ok:
                from terminal.i18n import reason

                self.from_worker(self.say, reason(self.wp.locale, f"supervisor_{check.reason}"))
                return
        operator = self.wp.operator.id if self.wp.operator else supervisor
        report, paths = service.close_day(operator=operator)
        self.from_worker(self.closed, report, paths, when_gone=self.closed_after_leaving)

    def say(self, text: str) -> None:
        self.query_one("#message", Static).update(text)

    def closed_text(self, report: Any, paths: list[Any]) -> str:
        return self.tr("dayclose.closed", number=report.z_number, path=paths[0].parent if paths else "-")

    def closed(self, report: Any, paths: list[Any]) -> None:
        self.show(report)
        self.say(self.closed_text(report, paths))

    def closed_after_leaving(self, report: Any, paths: list[Any]) -> None:
        self.app.notify(self.closed_text(report, paths), timeout=30)

    def action_back(self) -> None:
        self.dismiss()
