"""Technician's home: the doctor's checks refreshing live, a test tap with the whole APDU exchange
decoded, the last failed taps replayed through the kernel, a live camera preview, the log level, and
the support bundle (here, onto a USB drive, or to support for a ticket id).

Four tabs: **Checks** (`Service.doctor`, every area but the camera, again every
`REFRESH_S` seconds and on F5), **Test tap** (T: the next card is read by the EMV kernel; nothing is
paid, journaled or sent; each command with its status word, its time and the card's answer as a
TLV tree, card numbers masked), **Failed taps** (the terminal's kept traces, redacted; R replays the
selected one through the kernel and shows it on the Test tap tab), **Camera** (C: the picture in
half-block characters with its sharpness, frame rate and decode rate).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from terminal.tui.screens.base import BaseScreen, screen_work

REFRESH_S = 15.0
CHECK_AREAS = ("system", "reader", "backend", "clock", "journal", "queue", "limits")  # camera: its own tab
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MARKS = {"pass": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "skip": ("-", "grey50")}
SHARPNESS_FULL = 400.0  # the sharpness bar is full from here (100 is sharp enough)
PREVIEW_COLUMNS, PREVIEW_ROWS = 40, 12


def sharpness_bar(value: float, width: int = 20) -> str:
    filled = max(0, min(width, round(width * value / SHARPNESS_FULL)))
    return "█" * filled + "░" * (width - filled)


class DiagnosticsScreen(BaseScreen):
    TITLE_KEY = "diag.title"
    DEFAULT_CSS = """
    DiagnosticsScreen TabbedContent { height: 1fr; }
    DiagnosticsScreen TabPane { padding: 0 1; }
    DiagnosticsScreen .diag-scroll { height: 1fr; }
    DiagnosticsScreen #failed { height: 1fr; }
    DiagnosticsScreen #preview { width: 42; height: 13; }
    DiagnosticsScreen #camera-figures { width: 1fr; padding: 0 1; }
    """
    BINDINGS = [Binding("f5", "refresh", "action.check_again"),
                Binding("t,T", "test_tap", "action.test_tap"),
                Binding("r,R", "replay", "action.replay", show=False),
                Binding("c,C", "camera", "action.camera"),
                Binding("l,L", "log_level", "action.log_level", show=False),
                Binding("b,B", "support_bundle", "action.support_bundle"),
                Binding("u,U", "support_upload", "action.support_upload", show=False),
                Binding("d,D", "support_drive", "action.support_drive", show=False),
                Binding("escape", "cancel_tap", "action.cancel", show=False),
                Binding("f10", "sign_out", "action.sign_out")]

    def __init__(self, areas: Iterable[str] = CHECK_AREAS) -> None:
        super().__init__()
        self.areas = tuple(areas)
        self.failed: list[Any] = []
        self.tap_cancel = threading.Event()
        self.camera_stop: threading.Event | None = None

    def body(self) -> ComposeResult:
        with TabbedContent(id="tabs"):
            with TabPane(self.tr("diag.tab.checks"), id="tab-checks"), VerticalScroll(classes="diag-scroll"):
                yield Static(self.tr("diag.checking"), id="report")
            with TabPane(self.tr("diag.tab.tap"), id="tab-tap"), VerticalScroll(classes="diag-scroll"):
                yield Static(self.tr("diag.tap.hint"), id="tap")
            with TabPane(self.tr("diag.tab.failed"), id="tab-failed"):
                yield DataTable(id="failed", cursor_type="row", zebra_stripes=True)
                yield Static(self.tr("diag.failed.hint"), classes="hint")
            with TabPane(self.tr("diag.tab.camera"), id="tab-camera"), Horizontal():
                yield Static(self.tr("diag.camera.off"), id="preview")
                yield Static("", id="camera-figures")

    def on_mount(self) -> None:
        table = self.query_one("#failed", DataTable)
        for key in ("time", "outcome", "card", "commands", "origin"):
            table.add_column(self.tr(f"diag.failed.col.{key}"), key=key)
        self.load()
        self.load_failed()
        self.set_interval(REFRESH_S, self.load)

    def on_unmount(self) -> None:
        self.tap_cancel.set()
        if self.camera_stop is not None:
            self.camera_stop.set()

    def _tab(self, pane: str) -> None:
        self.query_one("#tabs", TabbedContent).active = pane

    # -- checks -------------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self._tab("tab-checks")
        self.load()

    @screen_work(exclusive=True, group="diag")
    def load(self) -> None:
        service = self.wp.service
        report = service.doctor(self.areas, latency_requests=3)
        self.from_worker(self.show, report, service.log_level())

    def show(self, report: Any, level: str) -> None:
        service = self.wp.service
        text = Text()
        text.append(self.tr("diag.header", terminal=service.config.terminal.id, level=level,
                            time=self.local_time(service.clock(), "%H:%M:%S")) + "\n")
        counts = report.counts()
        text.append(self.tr("diag.summary", passed=counts["pass"], warnings=counts["warn"], failed=counts["fail"],
                            skipped=counts["skip"]) + "\n", style="bold")
        for check in report.checks:
            mark, colour = MARKS[check.status]
            area = self.tr(f"doctor.area.{check.area}")
            name = self.tr(f"doctor.check.{check.name}")
            text.append(f"{mark} ", style=Style(color=colour, bold=True))
            text.append(f"{area} · {name}: ", style="bold" if check.status in ("warn", "fail") else "")
            text.append(f"{check.figure}\n")
            if check.status in ("warn", "fail"):
                text.append(f"    → {check.step_in(self.wp.locale)}\n", style=Style(color=colour))
        if "camera" not in self.areas:
            text.append(self.tr("diag.camera_tab_hint") + "\n", style="grey50")
        text.append(self.tr("diag.support_hint"), style="grey50")
        self.query_one("#report", Static).update(text)

    # -- test tap and replays -------------------------------------------------------------------------

    def action_test_tap(self) -> None:
        self._tab("tab-tap")
        self.tap_cancel = threading.Event()
        reader = self.wp.service.config.reader.device
        self.query_one("#tap", Static).update(self.tr("diag.tap.waiting", reader=reader))
        self.test_tap(self.tap_cancel)

    def action_cancel_tap(self) -> None:
        self.tap_cancel.set()

    @screen_work(exclusive=True, group="tap")
    def test_tap(self, cancel: threading.Event) -> None:
        check = self.wp.service.test_tap(cancel=cancel, timeout_s=60.0)
        self.from_worker(self.show_tap, check)

    def show_tap(self, check: Any) -> None:
        text = Text()
        mark, colour = MARKS["pass" if check.ok else "fail"]
        text.append(f"{mark} {self.tr(f'diag.outcome.{check.outcome}')}", style=Style(color=colour, bold=True))
        text.append(f"  {check.message}\n")
        text.append(self.tr("diag.tap.reader", reader=check.reader, atr=check.atr or "-") + "\n")
        if check.read is not None:
            read = check.read
            text.append(self.tr("diag.tap.card", scheme=read.scheme, pan=read.masked_pan, label=read.label,
                                aid=read.aid, cid=read.cid or "-") + "\n")
        shown = check.shown()
        text.append(self.tr("diag.tap.total", count=len(shown), ms=f"{check.total_ms:.1f}") + "\n")
        if check.saved:
            text.append(self.tr("diag.tap.kept", name=check.saved) + "\n", style="yellow")
            self.load_failed()
        for exchange in shown:
            ok = exchange.sw in ("9000",) or exchange.sw.startswith("61")
            text.append(f"\n> {exchange.name}", style="bold")
            text.append(f"  {exchange.sw}", style=Style(color="green" if ok else "red"))
            text.append(f"  {exchange.ms:.2f} ms\n")
            for line in exchange.tree:
                text.append(f"    {line}\n", style="grey70")
        self.query_one("#tap", Static).update(text)

    @screen_work(exclusive=True, group="failed")
    def load_failed(self) -> None:
        self.from_worker(self.show_failed, self.wp.service.failed_taps())

    def show_failed(self, taps: list[Any]) -> None:
        self.failed = taps
        table = self.query_one("#failed", DataTable)
        table.clear()
        for tap in taps:
            table.add_row(tap.saved_at.replace("T", " ")[:19], self.tr(f"diag.outcome.{tap.outcome}"),
                          tap.masked_pan or "-", str(tap.exchanges), tap.origin, key=tap.name)

    def action_replay(self) -> None:
        table = self.query_one("#failed", DataTable)
        if not self.failed:
            self._tab("tab-failed")
            self.notify(self.tr("diag.failed.none"))
            return
        if self.query_one("#tabs", TabbedContent).active != "tab-failed":
            self._tab("tab-failed")
            table.focus()
            return
        row = min(max(table.cursor_row, 0), len(self.failed) - 1)
        self._tab("tab-tap")
        self.replay(self.failed[row].name)

    @screen_work(exclusive=True, group="tap")
    def replay(self, name: str) -> None:
        self.from_worker(self.show_tap, self.wp.service.replay_tap(name))

    # -- camera -------------------------------------------------------------------------------------

    def action_camera(self) -> None:
        self._tab("tab-camera")
        if self.camera_stop is not None:
            self.camera_stop.set()
            self.camera_stop = None
            self.query_one("#preview", Static).update(self.tr("diag.camera.off"))
            return
        self.camera_stop = threading.Event()
        self.camera(self.camera_stop)

    @screen_work(exclusive=True, group="camera")
    def camera(self, stop: threading.Event) -> None:
        from drivers.base import ReaderUnavailableError

        try:
            self.wp.service.camera_preview(stop=stop, show=lambda frame: self.from_worker(self.show_frame, frame),
                                           columns=PREVIEW_COLUMNS, rows=PREVIEW_ROWS)
        except ReaderUnavailableError as exc:
            self.from_worker(self.camera_failed, exc.message)

    def camera_failed(self, message: str) -> None:
        self.camera_stop = None
        self.query_one("#preview", Static).update(self.tr("diag.camera.failed", message=message))

    def show_frame(self, frame: Any) -> None:
        if self.camera_stop is None:
            return
        picture = Text()
        for row in frame.cells:
            for top, bottom in row:
                picture.append("▀", style=Style(color=f"rgb({top[0]},{top[1]},{top[2]})",
                                                bgcolor=f"rgb({bottom[0]},{bottom[1]},{bottom[2]})"))
            picture.append("\n")
        self.query_one("#preview", Static).update(picture)
        figures = "\n".join((
            self.tr("diag.camera.figures", width=frame.width, height=frame.height, fps=f"{frame.fps:.1f}"),
            self.tr("diag.camera.sharpness", value=f"{frame.sharpness:.0f}"),
            sharpness_bar(frame.sharpness),
            self.tr("diag.camera.decode", decoded=frame.decoded, frames=frame.frames,
                    rate=f"{frame.decode_rate:.0%}"),
        ))
        self.query_one("#camera-figures", Static).update(figures)

    # -- log level and support bundle -----------------------------------------------------------------

    def action_log_level(self) -> None:
        service = self.wp.service
        current = service.log_level()
        following = LOG_LEVELS[(LOG_LEVELS.index(current) + 1) % len(LOG_LEVELS)] if current in LOG_LEVELS \
            else "INFO"
        operator = self.wp.operator.id if self.wp.operator is not None else None
        level = service.set_log_level(following, actor=operator)
        self.notify(self.tr("diag.log_level", level=level))
        self.load()

    def action_support_bundle(self) -> None:
        self.support_bundle("here")

    def action_support_upload(self) -> None:
        self.support_bundle("upload")

    def action_support_drive(self) -> None:
        self.support_bundle("drive")

    @screen_work(exclusive=True, group="bundle")
    def support_bundle(self, where: str) -> None:
        from terminal.errors import WalletposError

        service = self.wp.service
        try:
            if where == "upload":
                ticket = service.upload_support_bundle("technician")
                told = self.tr("diag.bundle_sent", ticket=ticket.ticket)
            elif where == "drive":
                told = self.tr("diag.bundle_on_drive", path=str(service.support_bundle_to_drive()))
            else:
                told = self.tr("diag.bundle_written", path=str(service.support_bundle()))
        except WalletposError as exc:
            self.from_worker(self.bundle_failed, exc.message, when_gone=self.bundle_failed)
            return
        self.from_worker(self.bundle_done, told, when_gone=self.bundle_done)

    def bundle_failed(self, message: str) -> None:
        self.app.notify(message, severity="error")

    def bundle_done(self, told: str) -> None:
        self.app.notify(told, timeout=30)

    def action_sign_out(self) -> None:
        self.wp.sign_out()
