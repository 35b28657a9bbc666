"""TUI tests drive the real app with Textual's Pilot over a real service (journal in a temp dir)."""

from __future__ import annotations

import pytest

from terminal.tui.app import make_app


@pytest.fixture
def staffed(service):
    ops = service.operators
    ops.add("cash1", "Wang Wei", "cashier", "1111", now=service.clock())
    ops.add("sup1", "Li Na", "supervisor", "2222", now=service.clock())
    ops.add("tech1", "Zhao Lei", "technician", "3333", now=service.clock())
    return service


@pytest.fixture
def app_factory(staffed):
    def make(**kwargs):
        kwargs.setdefault("status_interval", None)
        return make_app(staffed, **kwargs)

    return make


async def type_text(pilot, text: str) -> None:
    for ch in text:
        await pilot.press(ch)


async def sign_in(pilot, operator: str = "cash1", pin: str = "1111") -> None:
    """Type an operator id and PIN into the focused form (sign-in screen or supervisor prompt)."""
    await type_text(pilot, operator)
    await pilot.press("enter")
    await type_text(pilot, pin)
    await pilot.press("enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
