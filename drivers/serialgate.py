"""A gate driven by a serial relay board (pyserial): the USB relay modules sold for turnstiles and
barriers (CH340/LCUS family) that take 4-byte frames `A0 <relay> <0|1> <checksum>`, the checksum
being the sum of the first three bytes modulo 256.

Relays (channels of the board), as a gate controller wires them:

| relay | what |
|---|---|
| 1 | turnstile release: pulsed for `pulse_ms` to let one passenger through |
| 2 | green lamp (GO) |
| 3 | red lamp (STOP) |
| 4 | amber lamp ("see staff") |
| 5 | buzzer |
| 6 | alarm (sounder and beacon) |

Every call returns at once: pulses end from a timer thread. A write that fails (the board was
unplugged) raises `GateHardwareError`, and the gate loop opens the driver again. Tests run it over
a pseudo-terminal pair (os.openpty), reading the frames from the other end.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace

import serial

from drivers.gate import Beep, GateHardware, GateHardwareError, GateStatus, Indicator

RELEASE, GREEN, RED, AMBER, BUZZER, ALARM = 1, 2, 3, 4, 5, 6
LAMPS = {"green": GREEN, "red": RED, "amber": AMBER}
BEEPS = {"go": 120, "stop": 600}  # milliseconds of buzzer


def frame(relay: int, on: bool) -> bytes:
    """The board's command: switch `relay` (1-8) on or off."""
    if not 1 <= relay <= 8:
        raise ValueError(f"relay {relay}: the board has relays 1 to 8")
    head = bytes([0xA0, relay, 1 if on else 0])
    return head + bytes([sum(head) & 0xFF])


class SerialRelayGate(GateHardware):
    def __init__(self, device: str, baudrate: int = 9600, *, pulse_ms: int = 300) -> None:
        self.device = device
        self.name = f"serial:{device}"
        self.pulse_ms = pulse_ms
        self._lock = threading.Lock()
        self._timers: dict[int, threading.Timer] = {}
        try:
            self._port = serial.Serial(device, baudrate=baudrate, timeout=0.2, write_timeout=0.5)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise GateHardwareError(f"gate relay board {device} cannot be opened: {exc}") from exc
        self._status = GateStatus("ready", self.name, f"{baudrate} baud")
        self._closed = False
        for relay in range(1, 7):  # a known state: locked, lamps and sounders off
            self._write(frame(relay, False))

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise GateHardwareError(f"{self.name}: closed")
            try:
                self._port.write(data)
                self._port.flush()
            except (serial.SerialException, OSError) as exc:
                self._status = GateStatus("absent", self.name, str(exc))
                raise GateHardwareError(f"gate relay board {self.device} failed: {exc}") from exc

    def _pulse(self, relay: int, ms: int) -> None:
        self._write(frame(relay, True))
        old = self._timers.pop(relay, None)
        if old is not None:
            old.cancel()
        timer = threading.Timer(ms / 1000, self._end_pulse, (relay,))
        timer.daemon = True
        self._timers[relay] = timer
        timer.start()

    def _end_pulse(self, relay: int) -> None:
        with contextlib.suppress(GateHardwareError):  # the next command finds the board gone and says so
            self._write(frame(relay, False))
        if relay == RELEASE and self._status.state == "open":
            self._status = replace(self._status, state="ready")

    def open_for_one(self, hold_ms: int) -> None:
        self._pulse(RELEASE, min(self.pulse_ms, hold_ms))
        self._status = replace(self._status, state="open", opened=self._status.opened + 1)

    def set_indicator(self, colour: Indicator) -> None:
        for name, relay in LAMPS.items():
            self._write(frame(relay, name == colour))
        self._status = replace(self._status, indicator=colour)

    def alarm(self, on: bool) -> None:
        self._write(frame(ALARM, on))
        self._status = replace(self._status, alarm=on)

    def beep(self, kind: Beep) -> None:
        self._pulse(BUZZER, BEEPS[kind])

    def status(self) -> GateStatus:
        return self._status

    def close(self) -> None:
        if self._closed:
            return
        for timer in self._timers.values():
            timer.cancel()
        for relay in range(1, 7):
            try:
                self._write(frame(relay, False))
            except GateHardwareError:
                break
        with self._lock:
            self._closed = True
            self._port.close()
        self._status = GateStatus("absent", self.name, "closed")
