"""The simulated gate: a `GateHardware` that remembers what it was told (the demo's gate, the tests'
gate, and a gate without hardware). `events` lists every action with its monotonic time; listeners
are told of every change (the demo draws the gate from them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from drivers.gate import Beep, GateHardware, GateHardwareError, GateStatus, Indicator

MAX_EVENTS = 1000


class SimGate(GateHardware):
    def __init__(self, name: str = "simulated gate") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._status = GateStatus("ready", name)
        self.events: list[tuple[float, str, str]] = []  # (monotonic time, action, value)
        self._listeners: list[Callable[[GateStatus], None]] = []
        self._unplugged = False
        self._closed = False

    def connect(self) -> SimGate:
        """Open the gate again after `close` (what its opener does): fails while it is unplugged."""
        if self._unplugged:
            raise GateHardwareError(f"{self.name}: unplugged")
        self._closed = False
        return self

    def on_change(self, listener: Callable[[GateStatus], None]) -> None:
        self._listeners.append(listener)

    def _record(self, action: str, value: str, status: GateStatus) -> None:
        with self._lock:
            if self._unplugged or self._closed:
                raise GateHardwareError(f"{self.name}: not connected")
            self._status = status
            self.events.append((time.monotonic(), action, value))
            del self.events[:-MAX_EVENTS]
        for listener in list(self._listeners):
            listener(status)

    def open_for_one(self, hold_ms: int) -> None:
        s = self._status
        self._record("open", str(hold_ms), replace(s, state="open", opened=s.opened + 1))

    def passed(self) -> None:
        """The passenger went through: the gate locks again."""
        self._record("passed", "", replace(self._status, state="ready"))

    def set_indicator(self, colour: Indicator) -> None:
        self._record("indicator", colour, replace(self._status, indicator=colour))

    def alarm(self, on: bool) -> None:
        self._record("alarm", "on" if on else "off", replace(self._status, alarm=on))

    def beep(self, kind: Beep) -> None:
        self._record("beep", kind, self._status)

    def status(self) -> GateStatus:
        if self._unplugged:
            return GateStatus("absent", self.name, "unplugged")
        return self._status

    def unplug(self) -> None:
        self._unplugged = True

    def plug(self) -> None:
        self._unplugged = False

    def actions(self, action: str) -> list[str]:
        """The values of every `action` recorded, oldest first."""
        with self._lock:
            return [value for _, name, value in self.events if name == action]

    def close(self) -> None:
        self._closed = True
