"""Day close: the X-report on screen; F9 closes the batch (Z-report, JSON and text files, in the
terminal's language) once a supervisor approves; F8 ends a shift (its totals are cut there).

The screen says what is not sent to the backend yet before the batch is closed; once closed it
shows the Z-report and offers no second close (the next sales open a new batch)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from terminal.core.money import Money
from terminal.dayclose import DayCloseRefused
from terminal.tui.screens.base import BaseScreen, screen_work


class DayCloseScreen(BaseScreen):
    TITLE_KEY = "dayclose.title"
    BINDINGS = [Binding("f9", "close_batch", "action.close_batch"), Binding("f8", "end_shift", "action.end_shift"),
                Binding("escape", "back", "action.back")]

    def __init__(self) -> None:
        super().__init__()
        self.closed_z: int | None = None  # the Z-report this screen closed

    def body(self) -> ComposeResult:
        yield Static(self.tr("dayclose.hint"), id="hint", classes="hint")
        yield Static("", id="unsynced", classes="message")
        with VerticalScroll(classes="report"):
            yield Static("", id="report")
        yield Static("", id="message", classes="message")

    def on_mount(self) -> None:
        self.load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("close_batch", "end_shift"):
            return self.closed_z is None
        return super().check_action(action, parameters)

    def holds_keys_after(self, key: str) -> bool:
        """F9 or F8 asks a supervisor's id and PIN: typed right after it, they wait for the prompt."""
        operator = self.wp.operator
        return (key in ("f9", "f8") and self.closed_z is None
                and not (operator is not None and operator.role == "supervisor")) or super().holds_keys_after(key)

    @screen_work(exclusive=True, group="report")
    def load(self) -> None:
        service = self.wp.service
        report = service.day_report()
        lines = service.report_lines(report, self.wp.locale)
        unsynced = service.unsynced() if service.sync_enabled() else (0, 0)
        self.from_worker(self.show, lines, unsynced)

    def show(self, lines: list[str], unsynced: tuple[int, int] = (0, 0)) -> None:
        self.query_one("#report", Static).update(Text("\n".join(lines), no_wrap=True))
        rows, amount = unsynced
        self.query_one("#unsynced", Static).update(
            self.tr("dayclose.unsynced", count=rows, amount=self.money(Money(amount, self.wp.service.currency)))
            if rows else "")

    def approve(self, purpose: str, then: Any) -> None:
        """A signed-in supervisor approves by being signed in; anyone else needs a supervisor's PIN."""
        from terminal.tui.screens.dialogs import SupervisorPrompt

        operator = self.wp.operator
        if operator is not None and operator.role == "supervisor":
            then(None, None)
            return

        def approved(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                then(*answer)

        self.app.push_screen(self.wp.make(SupervisorPrompt, f"supervisor.title_{purpose}"), approved)

    def action_close_batch(self) -> None:
        if self.closed_z is None:
            self.approve("day_close", self.close_batch)

    def action_end_shift(self) -> None:
        if self.closed_z is None:
            self.approve("shift_end", self.end_shift)

    @screen_work(exclusive=True, group="report")
    def close_batch(self, supervisor: str | None, pin: str | None) -> None:
        service = self.wp.service
        operator = self.wp.operator.id if self.wp.operator else None
        try:
            report, paths = service.close_day(operator=operator, supervisor_id=supervisor, supervisor_pin=pin,
                                              locale=self.wp.locale)
        except DayCloseRefused as exc:
            self.from_worker(self.say, self.tr("dayclose.refused", why=exc.words(self.wp.locale)))
            return
        approver = supervisor or operator
        lines = service.report_lines(report, self.wp.locale, closed_by=approver, operator=operator)
        self.from_worker(self.closed, report, paths, lines, when_gone=self.closed_after_leaving)

    @screen_work(exclusive=True, group="report")
    def end_shift(self, supervisor: str | None, pin: str | None) -> None:
        service = self.wp.service
        operator = self.wp.operator.id if self.wp.operator else None
        try:
            number = service.end_shift(operator=operator, supervisor_id=supervisor, supervisor_pin=pin)
        except DayCloseRefused as exc:
            self.from_worker(self.say, self.tr("dayclose.shift_refused", why=exc.words(self.wp.locale)))
            return
        self.from_worker(self.shift_ended, number)

    def shift_ended(self, number: int) -> None:
        self.say(self.tr("dayclose.shift_ended", number=number))
        self.load()

    def closed_text(self, report: Any, paths: list[Any]) -> str:
        return self.tr("dayclose.closed", number=report.z_number, path=paths[0].parent if paths else "-")

    def closed(self, report: Any, paths: list[Any], lines: list[str]) -> None:
        self.closed_z = report.z_number
        self.refresh_bindings()
        self.query_one("#hint", Static).update(self.tr("dayclose.closed_hint", number=report.z_number))
        self.query_one("#unsynced", Static).update("")
        self.show(lines)
        self.say(self.closed_text(report, paths))

    def closed_after_leaving(self, report: Any, paths: list[Any], _lines: list[str]) -> None:
        self.app.notify(self.closed_text(report, paths), timeout=30)

