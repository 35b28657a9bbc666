"""Technician's home: what is working and what is not (journal, queue, backend, reader, camera)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from terminal.tui.screens.base import BaseScreen, screen_work


class DiagnosticsScreen(BaseScreen):
    TITLE_KEY = "diag.title"
    BINDINGS = [Binding("f5", "refresh", "action.diagnostics"),
                Binding("b,B", "support_bundle", "action.support_bundle"),
                Binding("f10", "sign_out", "action.sign_out")]

    def body(self) -> ComposeResult:
        with VerticalScroll(classes="report"):
            yield Static("", id="report")

    def on_mount(self) -> None:
        self.load()

    def action_refresh(self) -> None:
        self.load()

    @screen_work(exclusive=True, group="diag")
    def load(self) -> None:
        service = self.wp.service
        lines: list[str] = []
        status = service.status()
        lines.append(f"walletpos {status['version']}  terminal {status['terminal_id']} ({status['mode']})")
        lines.append(f"config    {status['config_file']}")
        lines.append(f"data dir  {status['data_dir']}")
        if not status["storage"]["ok"]:
            lines.append(f"STORAGE   FAILED: {status['storage']['problem']}")
        else:
            j = status["journal"]
            lines.append(f"journal   {j['total']} rows, {j['pending_sync']} waiting to sync")
            report = service.verify_journal()
            lines.append("verify    OK" if report.ok else
                         f"verify    FAILED at {report.table} #{report.first_bad_seq}: {report.problem}")
            lines.append(f"last sync {status.get('last_sync_at') or 'never'}")
        for extra in getattr(service, "diagnostics", lambda: [])():
            lines.append(extra)
        self.from_worker(self.show, lines)

    def show(self, lines: list[Any]) -> None:
        self.query_one("#report", Static).update("\n".join(str(x) for x in lines))

    def action_support_bundle(self) -> None:
        self.support_bundle()

    @screen_work(exclusive=True, group="bundle")
    def support_bundle(self) -> None:
        from terminal.errors import WalletposError
        from terminal.support import write_bundle

        try:
            path = write_bundle(self.wp.service)
        except WalletposError as exc:
            self.from_worker(self.bundle_failed, exc.message, when_gone=self.bundle_failed)
            return
        self.from_worker(self.bundle_written, path, when_gone=self.bundle_written)

    def bundle_failed(self, message: str) -> None:
        self.app.notify(message, severity="error")

    def bundle_written(self, path: Any) -> None:
        self.app.notify(self.tr("diag.bundle_written", path=str(path)))

    def action_sign_out(self) -> None:
        self.wp.sign_out()
