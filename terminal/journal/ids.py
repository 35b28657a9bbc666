"""Transaction ids: time-ordered UUIDs (version 7) made cheaply on every append."""

from __future__ import annotations

import os
import threading
import time


class _IdTails:
    """The random part of transaction ids, made 256 at a time from one `os.urandom` read and
    already laid out as `7xxx-Vxxx-xxxxxxxxxxxx` (version 7, RFC 9562 variant bits). An append
    then only takes one from the list (atomic under the GIL) and puts the clock in front. A forked
    child starts with an empty list, so a parent and its child never hand out the same tail."""

    BATCH = 256

    def __init__(self) -> None:
        self._tails: list[str] = []
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._tails = []
        self._lock = threading.Lock()

    def take(self) -> str:
        try:
            return self._tails.pop()
        except IndexError:
            with self._lock:
                while True:  # other threads keep popping outside the lock: refill until one is ours
                    try:
                        return self._tails.pop()
                    except IndexError:
                        h = os.urandom(10 * self.BATCH).hex()  # 20 hex digits a tail, 19 of them used
                        self._tails.extend(f"7{h[i:i + 3]}-{_VARIANT[h[i + 3]]}{h[i + 4:i + 7]}-{h[i + 7:i + 19]}"
                                           for i in range(0, len(h), 20))


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 9562 variant bits 10
_TAILS = _IdTails()


def new_txn_id() -> str:
    """A time-ordered UUID (version 7: 48-bit Unix milliseconds, version 7, 74 random bits).

    Ids made on one terminal sort by creation time, so the id index grows at its right edge
    instead of splitting random pages on every append."""
    ms = time.time_ns() // 1_000_000
    return f"{ms >> 16:08x}-{ms & 0xffff:04x}-{_TAILS.take()}"


