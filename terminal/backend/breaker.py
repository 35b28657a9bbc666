"""The circuit breaker: after `breaker_failures` consecutive failures the checkout stops asking the
backend; after `breaker_reset_ms` the sync worker's next call is the probe that closes it again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("walletpos.backend")


class CircuitBreaker:
    """closed -> (N consecutive failures) -> open -> (after reset_s) half_open -> success: closed,
    failure: open again. Thread-safe; no IO."""

    def __init__(self, failures: int, reset_s: float, *, monotonic: Callable[[], float] = time.monotonic):
        self.threshold = failures
        self.reset_s = reset_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._monotonic() - self._opened_at >= self.reset_s else "open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allows_checkout(self) -> bool:
        """May a payment ask the backend now? Only when closed: a checkout never probes."""
        with self._lock:
            return self._opened_at is None

    def allows_probe(self) -> bool:
        """May the sync worker call (closed or half-open)?"""
        with self._lock:
            return self._state() != "open"

    def seconds_until_probe(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.reset_s - (self._monotonic() - self._opened_at))

    def record_success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("backend answered again: circuit closed")
            self._failures, self._opened_at = 0, None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            state = self._state()
            if state == "half_open" or (state == "closed" and self._failures >= self.threshold):
                if state == "closed":
                    log.warning("backend failed %d times in a row: circuit open for %.1f s", self._failures,
                                self.reset_s)
                self._opened_at = self._monotonic()

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "consecutive_failures": self._failures,
                "seconds_until_probe": round(self.seconds_until_probe(), 3)}


__all__ = ["CircuitBreaker"]
