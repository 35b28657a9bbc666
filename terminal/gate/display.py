"""The passenger display of a transit gate: Textual, full screen, large type, in English or Chinese.

It shows what the gate decided for the last tap, in words a passenger understands: a green GO with
the fare charged and the day's total so far (this gate's own view: the back office charges the
network-wide figure), or a red STOP with the reason ("card not accepted", "tap only once"), amber
for "see staff". The big words and amounts are drawn in block letters five rows high, so they can be
read from a step away on any terminal. After a few seconds it returns to "Tap your card or show your
code". It only displays: the gate lane decides (`Service.on_gate_event`), in its own thread, and the
display is told with `call_from_thread`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from terminal.core.money import Money, format_money
from terminal.gate.lane import GateEvent
from terminal.i18n import t
from terminal.service import Service
from terminal.transit import GatePlace

SHOWN_S = {"go": 4.0, "stop": 5.0}

# block letters, five rows of three columns ("#" is a full block)
_FONT = {
    "G": ["###", "#  ", "# #", "# #", "###"], "O": ["###", "# #", "# #", "# #", "###"],
    "S": ["###", "#  ", "###", "  #", "###"], "T": ["###", " # ", " # ", " # ", " # "],
    "P": ["###", "# #", "###", "#  ", "#  "], "0": ["###", "# #", "# #", "# #", "###"],
    "1": [" # ", "## ", " # ", " # ", "###"], "2": ["###", "  #", "###", "#  ", "###"],
    "3": ["###", "  #", "###", "  #", "###"], "4": ["# #", "# #", "###", "  #", "  #"],
    "5": ["###", "#  ", "###", "  #", "###"], "6": ["###", "#  ", "###", "# #", "###"],
    "7": ["###", "  #", "  #", "  #", "  #"], "8": ["###", "# #", "###", "# #", "###"],
    "9": ["###", "# #", "###", "  #", "###"], ".": ["   ", "   ", "   ", "   ", " # "],
    ",": ["   ", "   ", "   ", " # ", "#  "], " ": ["   "] * 5, "-": ["   ", "   ", "###", "   ", "   "],
}


def big(text: str) -> str:
    """`text` in block letters (characters the font lacks are left out)."""
    rows = ["", "", "", "", ""]
    for ch in text.upper():
        glyph = _FONT.get(ch)
        if glyph is None:
            continue
        for i in range(5):
            rows[i] += glyph[i].replace("#", "█") + " "
    return "\n".join(r.rstrip() for r in rows)


class GateControls(Protocol):
    """What the transit demo adds to the display: keys that tap virtual cards at its gates."""

    def hint(self) -> str:
        """The keys, in one line for the bottom of the screen."""

    def press(self, key: str) -> bool:
        """Handle a key (False: not one of the demo's)."""


class PassengerDisplay(App[None]):
    """The screen a passenger sees at one gate (or, in the demo, at the gate that was last tapped)."""

    CSS = """
    Screen { align: center middle; }
    #panel { width: 100%; height: 100%; align: center middle; content-align: center middle; padding: 1 2; }
    #panel.idle { background: $panel; }
    #panel.go { background: #0b6b2b; }
    #panel.stop { background: #8b1a1a; }
    #panel.staff { background: #a36a00; }
    .line { width: 100%; content-align: center middle; text-align: center; }
    #place { color: $text-muted; height: 1; }
    #headline { text-style: bold; height: 6; }
    #sentence { text-style: bold; height: 2; }
    #amount { height: 6; }
    #today { height: 1; text-style: bold; }
    #hint { height: auto; color: $text-muted; }
    """

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("q", "quit", "Quit", show=False)]

    def __init__(self, service: Service, *, locale: str = "en", place: GatePlace | None = None,
                 station_name: Callable[[str], str] | None = None, controls: GateControls | None = None,
                 subscribe: bool = True, idle_after: dict[str, float] | None = None) -> None:
        super().__init__()
        self.service = service
        self.locale = locale
        self.place = place or service.gate_place()
        self.station_name = station_name or (lambda sid: sid)
        self.controls = controls
        self.idle_after = SHOWN_S if idle_after is None else idle_after
        self.last: GateEvent | None = None
        self._timer: Any = None
        if subscribe:
            service.on_gate_event(self._from_lane)

    def tr(self, key: str, **values: object) -> str:
        return t(self.locale, key, **values)

    def compose(self) -> ComposeResult:
        with Vertical(id="panel", classes="idle"):
            yield Static("", id="place", classes="line")
            yield Static("", id="headline", classes="line")
            yield Static("", id="sentence", classes="line")
            yield Static("", id="amount", classes="line")
            yield Static("", id="today", classes="line")
            yield Static("", id="hint", classes="line")

    def on_mount(self) -> None:
        self.show_idle()

    # -- what is shown ------------------------------------------------------------------------------

    def _money(self, amount: Money) -> str:
        d = self.service.config.display
        return format_money(amount, decimal_sep=d.decimal_separator, group_sep=d.group_separator)

    def _place_text(self, place: GatePlace) -> str:
        return self.tr("gate.place", station=self.station_name(place.station), gate=place.gate_id,
                       direction=self.tr(f"gate.direction.{place.direction}"))

    def _set(self, css: str, place: GatePlace, headline: str, sentence: str, amount: str, today: str) -> None:
        panel = self.query_one("#panel")
        panel.set_classes(css)
        self.query_one("#place", Static).update(self._place_text(place))
        self.query_one("#headline", Static).update(headline)
        self.query_one("#sentence", Static).update(sentence)
        self.query_one("#amount", Static).update(amount)
        self.query_one("#today", Static).update(today)
        self.query_one("#hint", Static).update(self.controls.hint() if self.controls is not None else "")

    def show_idle(self) -> None:
        self._set("idle", self.place, "", self.tr("gate.idle"), "", "")

    def show(self, event: GateEvent) -> None:
        """Show one decided tap (on the app's thread)."""
        self.last = event
        result = event.result
        if result.outcome == "same_tap":
            return  # the same tap read again: what is on screen stays
        place = event.place
        if result.sign == "go":
            lines = []
            kinds = set(result.reasons)
            if "journey_started" in kinds:
                lines.append(self.tr("gate.journey_started"))
            if "priced_by_back_office" in kinds:
                lines.append(self.tr("gate.priced_later"))
            if "cap_reached" in kinds:
                lines.append(self.tr("gate.cap_reached"))
            if "transfer" in kinds:
                lines.append(self.tr("gate.transfer"))
            sentence = self.tr("gate.go") + ("\n" + " · ".join(lines) if lines else "")
            charged = result.charged or Money(0, self.service.currency)
            amount = big(self._money(charged).lstrip("¥$£€")) + "\n" + self.tr("gate.fare", amount=self._money(charged))
            today = self.tr("gate.today", amount=self._money(result.day_total)) if result.day_total is not None else ""
            self._set("go", place, big("GO"), sentence, amount, today)
        else:
            css = "staff" if result.sign == "see_staff" else "stop"
            self._set(css, place, big("STOP"), self.tr(f"gate.sign.{result.sign}"), "", "")
        if self._timer is not None:
            self._timer.stop()
        after = self.idle_after.get("go" if result.sign == "go" else "stop")
        if after:
            self._timer = self.set_timer(after, self.show_idle)

    def _from_lane(self, event: GateEvent) -> None:
        """The gate lane's thread: hand over to the app's."""
        if self.is_running:
            self.call_from_thread(self.show, event)

    # -- the demo's keys ------------------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        if self.controls is not None and event.key != "q" and self.controls.press(event.key):
            event.stop()
            self.query_one("#hint", Static).update(self.controls.hint())


__all__ = ["GateControls", "PassengerDisplay", "big"]
