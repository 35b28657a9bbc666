"""The amount charged is always the amount typed before Enter, however fast the keys come.

A property test over the real app (Pilot) and a real journal file: random amounts are typed as one
burst of digits ending with Enter, with no pause between the keys (every key event is queued at the
app before it handles the first: faster than Pilot's `press`, which waits for the app to be idle
after each key, and the fastest a terminal can deliver them); the sale is paid in cash (X, the
exact amount) and the journaled amount is compared with the typed one. 500 examples, no mismatch
allowed. (tests/tui/test_cashier.py types with `press` too.)
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.tui.screens.checkout import CheckoutScreen
from terminal.tui.screens.present import PresentScreen
from terminal.tui.screens.result import ResultScreen
from tests.tui.conftest import burst, sign_in

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


async def until(pilot, condition, timeout: float = 20.0) -> None:
    """Let the app run until `condition()` holds (checked every few milliseconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out on {pilot.app.screen!r}")
        await asyncio.sleep(0.002)


async def test_a_burst_of_digits_and_enter_journals_exactly_the_typed_amount(app_factory, staffed):
    app = app_factory()
    checked: list[tuple[int, int]] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await sign_in(pilot)
        loop = asyncio.get_running_loop()

        async def sell(digits: str) -> int:
            assert isinstance(app.screen, CheckoutScreen) and not app.screen.total().is_positive
            burst(app, [*digits, "enter"])
            await until(pilot, lambda: isinstance(app.screen, PresentScreen))
            burst(app, ["x"])  # cash, the exact amount
            await until(pilot, lambda: isinstance(app.screen, ResultScreen) and app.screen.is_mounted)
            row = app.screen.result.row
            burst(app, ["enter"])  # the next sale
            await until(pilot, lambda: isinstance(app.screen, CheckoutScreen) and not app.screen.total().is_positive)
            stored = staffed.require_journal().txns.get(row.id)
            return stored.amount.minor

        @settings(max_examples=500, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(minor=st.integers(1, 10**10 - 1))
        def typed_is_charged(minor: int) -> None:
            journaled = asyncio.run_coroutine_threadsafe(sell(str(minor)), loop).result(timeout=60)
            checked.append((minor, journaled))
            assert journaled == minor

        await asyncio.to_thread(typed_is_charged)
    mismatches = [(typed, journaled) for typed, journaled in checked if typed != journaled]
    assert len(checked) >= 500 and mismatches == []
    assert staffed.require_journal().head().counts()["total"] == len(checked)
