"""The display that faces the customer: the amount to pay, what to do (tap, enter the PIN), the result.

The terminal tells the display what to show with `show(CustomerView)`; the texts are already in the
terminal's language. `show` never blocks the caller (a real display driver queues the update).
`SimCustomerDisplay` keeps what it shows (`current`, `shown`) and tells listeners, so the demo can
draw it in a Textual view and the tests can read it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

ViewKind = Literal["idle", "amount", "pin", "processing", "result"]


@dataclass(frozen=True)
class CustomerView:
    kind: ViewKind
    amount_text: str = ""
    message: str = ""
    approved: bool | None = None  # for a result


class CustomerDisplay(Protocol):
    name: str

    def show(self, view: CustomerView) -> None: ...


class SimCustomerDisplay:
    def __init__(self, name: str = "Simulated customer display", keep: int = 50) -> None:
        self.name = name
        self.current = CustomerView("idle")
        self.shown: list[CustomerView] = []
        self._keep = keep
        self._listeners: list[Callable[[CustomerView], None]] = []
        self._lock = threading.Lock()

    def show(self, view: CustomerView) -> None:
        with self._lock:
            self.current = view
            self.shown = [*self.shown[-(self._keep - 1):], view]
            listeners = list(self._listeners)
        for listener in listeners:
            listener(view)

    def listen(self, listener: Callable[[CustomerView], None]) -> Callable[[], None]:
        """Call `listener(view)` on every change (from the caller's thread); returns the way to stop."""
        with self._lock:
            self._listeners.append(listener)

        def stop() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return stop


__all__ = ["CustomerDisplay", "CustomerView", "SimCustomerDisplay", "ViewKind"]
