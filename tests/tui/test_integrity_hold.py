"""The status bar says when the journal is under an integrity hold: rows were deleted from a real
journal file behind the terminal's back (as in tests/attack/test_tamper.py), the terminal found it
when it started and turned offline approvals off; every screen's status bar says so, first and in a
colour of its own, in both languages and at both sizes, with what to do (call a technician), until
a technician resolves the hold (`walletpos journal resolve`, here the service's own operation)."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from rich.style import Style

from terminal.bootstrap import bootstrap
from terminal.i18n import display_width, t
from terminal.tui.app import make_app
from terminal.tui.screens.checkout import CheckoutScreen
from terminal.tui.widgets import INTEGRITY_HOLD_STYLE, StatusBar
from tests.attack.test_tamper import pay, sql, terminal_with_rows
from tests.tui.conftest import sign_in, wait_for

pytestmark = pytest.mark.timeout(180)


class Line(NamedTuple):
    """The status bar's line as the terminal gets it: its text and the style of each cell run."""

    plain: str
    segments: list[tuple[str, Style | None]]

    def styles_of(self, words: str) -> list[Style]:
        """The styles of the cells that show `words`."""
        start = self.plain.index(words)
        end, at, out = start + len(words), 0, []
        for text, style in self.segments:
            if at < end and at + len(text) > start and style is not None:
                out.append(style)
            at += len(text)
        return out


def status_line(app) -> Line:
    strip = app.screen.query_one(StatusBar).render_line(0)
    segments = [(segment.text, segment.style) for segment in strip]
    return Line("".join(text for text, _ in segments).strip(), segments)


async def shown(service, locale: str, size: tuple[int, int]) -> Line:
    app = make_app(service, locale=locale, status_interval=None)
    async with app.run_test(size=size) as pilot:
        await sign_in(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, CheckoutScreen))
        app.refresh_status()
        await app.workers.wait_for_complete()
        await pilot.pause()
        return status_line(app)


@pytest.fixture
def held(tmp_path, clock):
    data = tmp_path / "data"
    terminal_with_rows(data, clock)
    sql(data, "DELETE FROM txn WHERE seq >= 10")  # the last three sales gone from the file
    with bootstrap(data_dir=data, clock=clock, env={}) as svc:
        svc.operators.add("cash1", "Wang Wei", "cashier", "1111", now=clock())
        yield svc


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
async def test_the_status_bar_shows_the_hold_and_says_to_call_a_technician(held, locale):
    assert held.integrity_problem() is not None and not pay(held, token="tokAfterHold").approved
    long, short = t(locale, "status.integrity_hold"), t(locale, "status.short.integrity_hold")
    for size in ((80, 24), (100, 30), (200, 40)):
        line = await shown(held, locale, size)
        print(f"\n{locale} {size[0]}x{size[1]}: {line.plain}")
        words = long if size[0] == 200 else short  # the long form where the whole long line fits
        assert line.plain.startswith(words)  # first: never the part a narrow terminal cuts off
        wanted = Style.parse(INTEGRITY_HOLD_STYLE)
        styles = line.styles_of(words)
        assert styles and all(st.bold and st.bgcolor is not None and st.color is not None
                              and st.bgcolor.get_truecolor() == wanted.bgcolor.get_truecolor()
                              and st.color.get_truecolor() == wanted.color.get_truecolor() for st in styles), styles
        assert display_width(line.plain) <= size[0] - 2  # whole on one line
    assert "technician" in t("en", "status.short.integrity_hold")
    assert "技术员" in t("zh-CN", "status.short.integrity_hold")


async def test_the_hold_leaves_the_status_bar_once_a_technician_resolves_it(held):
    before = await shown(held, "en", (80, 24))
    assert t("en", "status.short.integrity_hold") in before.plain
    held.resolve_integrity_hold(actor="tech1", note="checked with support case 42")
    after = await shown(held, "en", (80, 24))
    print(f"\nheld: {before.plain}\nresolved: {after.plain}")
    assert t("en", "status.short.integrity_hold") not in after.plain
    assert "Wang Wei" in after.plain and held.integrity_problem() is None
