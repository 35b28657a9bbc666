"""The customer's PIN-entry device (PIN pad): the interface, the PIN block format, a simulated pad.

The customer's PIN is typed on the PIN pad, never on the cashier's keyboard, and leaves the pad
only sealed to the backend's key: the terminal gives the pad the backend's X25519 sealing key and
what the PIN is bound to (the card token and the amount it authorises); the pad seals
`{"pin": ..., "card_token": ..., "amount": ..., "currency": ...}` with `seal_pin` and answers
with the sealed block and nothing else. The terminal forwards the block to the backend, which
opens it and checks the PIN (the sandbox backend holds a test PIN per card). The cashier's screen
only learns that a PIN was entered.

`SimPinPad` is a real driver with no hardware behind it (like `drivers.simreader`): the demo and
the tests play the customer (`customer_types`, `customer_cancels`) and the pad seals what was
typed exactly as a device would.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from drivers.base import ReaderStatus
from terminal.security import seal_for_backend

PinOutcome = Literal["entered", "cancelled", "timeout"]


def seal_pin(public_key: bytes, pin: str, binding: Mapping[str, Any]) -> str:
    """The sealed PIN block: the PIN with what it is bound to, sealed to the backend's key."""
    payload = {"pin": pin, **binding}
    return seal_for_backend(public_key, json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())


@dataclass(frozen=True)
class PinRequest:
    """What the terminal asks the pad: show `amount_text`, take a PIN, seal it with `public_key`
    bound to `binding` (card token, amount, currency)."""

    amount_text: str
    public_key: bytes
    binding: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 60.0


@dataclass(frozen=True)
class PinEntry:
    """The pad's answer: `pin_block` (sealed) when a PIN was entered, else why not."""

    outcome: PinOutcome
    pin_block: str | None = None

    def __repr__(self) -> str:  # a sealed block in a log line helps nobody
        return f"PinEntry({self.outcome}{', sealed' if self.pin_block else ''})"


class PinPad(Protocol):
    name: str

    def status(self) -> ReaderStatus: ...

    def read_pin(self, request: PinRequest, cancel: threading.Event) -> PinEntry:
        """Show the amount, wait for the customer's PIN (until `cancel` or the request's timeout) and
        answer with the PIN sealed on the pad."""


class SimPinPad:
    """A simulated PIN pad: what it shows is `display`; the customer's keys come from
    `customer_types` / `customer_cancels` (the demo's keys, the tests)."""

    MIN_DIGITS, MAX_DIGITS = 4, 12

    def __init__(self, name: str = "Simulated PIN pad") -> None:
        self.name = name
        self.display = ""
        self.waiting = threading.Event()  # set while the pad waits for the customer
        self._keys: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.requests = 0

    def status(self) -> ReaderStatus:
        return ReaderStatus("ready", self.name)

    # -- the customer ---------------------------------------------------------------------------

    def customer_types(self, pin: str) -> None:
        """The customer types `pin` and presses the pad's OK key."""
        if not (pin.isascii() and pin.isdigit() and self.MIN_DIGITS <= len(pin) <= self.MAX_DIGITS):
            raise ValueError(f"a PIN is {self.MIN_DIGITS} to {self.MAX_DIGITS} digits")
        self._keys.put(pin)

    def customer_cancels(self) -> None:
        self._keys.put(None)

    # -- the terminal ---------------------------------------------------------------------------

    def read_pin(self, request: PinRequest, cancel: threading.Event) -> PinEntry:
        self.requests += 1
        while True:  # a key pressed while nothing was asked is not kept for this payment
            try:
                self._keys.get_nowait()
            except queue.Empty:
                break
        self.display = f"{request.amount_text}  PIN?"
        self.waiting.set()
        try:
            waited = 0.0
            while not cancel.is_set() and waited < request.timeout_s:
                try:
                    pin = self._keys.get(timeout=0.05)
                except queue.Empty:
                    waited += 0.05
                    continue
                if pin is None:
                    return PinEntry("cancelled")
                return PinEntry("entered", seal_pin(request.public_key, pin, request.binding))
            return PinEntry("cancelled" if cancel.is_set() else "timeout")
        finally:
            self.waiting.clear()
            self.display = ""


__all__ = ["PinEntry", "PinOutcome", "PinPad", "PinRequest", "SimPinPad", "seal_pin"]
