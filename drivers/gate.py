"""The gate hardware interface: what a transit gate's controller can do, whatever drives it.

`GateHardware` opens the gate for one passenger, shows an indicator (green GO, red STOP, amber
"see staff"), sounds the buzzer and the alarm. Drivers are chosen by a spec string, as readers are
(`drivers.gates.open_gate`):

| spec | gate |
|---|---|
| `sim:` | the simulated gate (drivers/simgate.py): the demo, the tests, a gate without hardware |
| `serial:/dev/ttyUSB0[@9600]` | a serial relay board (drivers/serialgate.py, pyserial) |

Hardware comes and goes like a reader: a failing board raises `GateHardwareError`; the gate loop
keeps deciding taps (the passenger display still says GO or STOP) and opens the driver again with
backoff. Drivers report state; they never decide anything.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal

from terminal.errors import ReaderError

Indicator = Literal["off", "green", "red", "amber"]
GateState = Literal["starting", "ready", "open", "absent", "error"]
Beep = Literal["go", "stop"]


class GateHardwareError(ReaderError):
    """The gate hardware cannot be reached (unplugged, a serial port that went away)."""

    title = "Gate hardware unavailable"


@dataclass(frozen=True, slots=True)
class GateStatus:
    state: GateState
    name: str
    detail: str = ""
    indicator: Indicator = "off"
    alarm: bool = False
    opened: int = 0  # times opened for a passenger since the driver started


class GateHardware(abc.ABC):
    """A transit gate's actuators. Every call returns at once (pulses are timed by the driver)."""

    name: str = "gate"

    @abc.abstractmethod
    def open_for_one(self, hold_ms: int) -> None:
        """Release the gate for one passenger (it locks again after them, or after `hold_ms`)."""

    @abc.abstractmethod
    def set_indicator(self, colour: Indicator) -> None: ...

    @abc.abstractmethod
    def alarm(self, on: bool) -> None: ...

    @abc.abstractmethod
    def beep(self, kind: Beep) -> None:
        """A short beep for GO, a longer one for STOP."""

    @abc.abstractmethod
    def status(self) -> GateStatus: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Release the hardware (idempotent); the gate is left locked with its indicator off."""

    def __enter__(self) -> GateHardware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

