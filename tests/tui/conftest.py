"""TUI tests drive the real app with Textual's Pilot over a real service (journal in a temp dir)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.widgets import DataTable

from terminal.bootstrap import bootstrap
from terminal.service import Service
from terminal.tui.app import make_app
from tests.conftest import FixedClock

STAFF = (("cash1", "Wang Wei", "cashier", "1111"), ("sup1", "Li Na", "supervisor", "2222"),
         ("tech1", "Zhao Lei", "technician", "3333"))


@pytest.fixture(scope="session")
def staffed_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A terminal's data directory with a cashier, a supervisor and a technician, made once a session
    (hashing three PINs is most of a screen test's set-up); each test opens a copy of its own."""
    data = tmp_path_factory.mktemp("staffed") / "data"
    clock = FixedClock()
    with bootstrap(config_path=None, data_dir=data, clock=clock, env={}) as svc:
        for operator, name, role, pin in STAFF:
            svc.operators.add(operator, name, role, pin, now=clock())
    return data


@pytest.fixture
def service(staffed_template: Path, data_dir: Path, clock: FixedClock) -> Iterator[Service]:
    """The TUI tests' terminal: a copy of `staffed_template` (tests/conftest.py's `service` with the
    three operators of STAFF), the same fixed clock."""
    shutil.copytree(staffed_template, data_dir)
    with bootstrap(config_path=None, data_dir=data_dir, clock=clock, env={}) as svc:
        yield svc


@pytest.fixture
def staffed(service: Service) -> Service:
    return service


@pytest.fixture
def app_factory(staffed):
    def make(**kwargs):
        kwargs.setdefault("status_interval", None)
        return make_app(staffed, **kwargs)

    return make


def burst(app, keys: list[str]) -> None:
    """Keys as a keypad or a barcode scanner sends them: all queued at once, no pause between them
    (the events the terminal driver would deliver, posted to the app before it handles any)."""
    for key in keys:
        char = "\r" if key == "enter" else " " if key == "space" else key if len(key) == 1 else None
        app.post_message(events.Key(key, char))


def keys_of(text: str) -> list[str]:
    return ["space" if ch == " " else ch for ch in text]


async def type_text(pilot, text: str) -> None:
    """`text` typed as one burst (as a keypad or a scanner sends it), then the app left to handle it
    until it is idle: one wait for the whole text, where Pilot's `press` waits twice for every key."""
    burst(pilot.app, keys_of(text))
    await pilot.pause()


async def sign_in(pilot, operator: str = "cash1", pin: str = "1111") -> None:
    """Type an operator id and PIN into the focused form (sign-in screen or supervisor prompt): each as
    a burst of keys, as a keypad sends them, then Enter (which Pilot presses once the app is idle)."""
    burst(pilot.app, list(operator))
    await pilot.press("enter")
    burst(pilot.app, list(pin))
    await pilot.press("enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 20.0) -> None:
    """Let the app run until `condition()` holds and the screen on top has mounted (a screen is the
    app's `screen` from the moment it is pushed; a test that ends before its `on_mount` ran closes the
    app under it); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (condition() and pilot.app.screen.is_mounted):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out on {pilot.app.screen!r}")
        await pilot.pause(0.01)


class Told(NamedTuple):
    message: str
    severity: str


def record_notifications(app: Any) -> list[Told]:
    """Every notification the app is asked to show from now on, in order. Screens and workers tell the
    operator through Textual's public `App.notify` (a `Widget.notify` goes there too); this keeps a
    copy of each call and then shows it as usual."""
    told: list[Told] = []
    notify = app.notify

    def recording(message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
                  markup: bool = True) -> None:
        told.append(Told(message, severity))
        notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    app.notify = recording
    return told


def table_measured(table: DataTable) -> bool:
    """`table` has measured the rows a worker just added (a DataTable does that on idle, after they are
    in the table): every column is as wide as its widest cell and the scrollable height counts every row."""
    for key, column in table.columns.items():
        cells = table.get_column(key)
        widest = max((cell.cell_len if isinstance(cell, Text) else cell_len(str(cell)) for cell in cells), default=0)
        if column.content_width < widest:
            return False
    header = table.header_height if table.show_header else 0
    return table.virtual_size.height == header + sum(row.height for row in table.ordered_rows)
