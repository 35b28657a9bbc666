"""The in-process contactless reader for the demo and the TUI tests: a real `CardReader` whose field is
filled by the simulated customer instead of by radio.

- `tap(card)`: the card comes into the field for exactly one session. When that session is closed the
  field is empty again: the next `wait_for_card` returns None once (the caller sees the removal), and
  the one after that the next tapped card. Taps made while a card is in the field wait their turn.
- `place(card)` / `remove()`: a card that stays in the field (every `wait_for_card` gives a new session
  on it, after a power-on reset) until it is taken away; `remove()` also ends an open session.
- `unplug()` / `plug()`: while unplugged, `wait_for_card` and `transmit` raise ReaderUnavailableError
  and `status()` is "absent"; whatever was in the field (and every waiting tap) is lost.

`wait_for_card` sleeps on a `threading.Condition` (no polling), so a watcher thread wakes as soon as the
UI thread taps. All methods are thread-safe. A session's `transmit` calls `card.respond`; an empty answer
or a card that has left the field is a CardRemovedError.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Protocol

from drivers.base import CardReader, CardRemovedError, CardSession, ReaderStatus, ReaderUnavailableError

log = logging.getLogger("walletpos.drivers.simreader")


class Card(Protocol):
    """What a reader or card server needs from a card (the virtual cards of `drivers.sim`, replays)."""

    name: str
    pan: str
    atr: bytes
    uid: bytes
    apdu_count: int
    removed: bool

    def reset(self) -> None: ...

    def respond(self, apdu: bytes) -> bytes: ...


class SimSession(CardSession):
    """One power-on of the card in the simulated field."""

    def __init__(self, reader: SimReader, card: Card, generation: int) -> None:
        self._reader = reader
        self.card = card
        self.generation = generation
        self.uid = card.uid
        self.atr = card.atr
        self.closed = False

    def transmit(self, apdu: bytes) -> bytes:
        return self._reader._transmit(self, apdu)

    def close(self) -> None:
        self._reader._close_session(self)


class SimReader(CardReader):
    """An in-process reader. See the module docstring for what the simulated customer can do."""

    def __init__(self, name: str = "sim") -> None:
        self.name = name
        self._cond = threading.Condition()
        self._plugged = True
        self._closed = False
        self._taps: deque[Card] = deque()
        self._field: Card | None = None
        self._field_is_tap = False
        self._session: SimSession | None = None  # the one live session (a new one ends the old)
        self._generation = 0
        self._removal_pending = False  # the field became empty and no wait_for_card has said so yet

    # -- what the simulated customer does --------------------------------------------------------

    def tap(self, card: Card) -> bool:
        """Tap `card`: in the field for one session. False when the reader is unplugged (a real reader
        would not see the tap either)."""
        with self._cond:
            if not self._plugged or self._closed:
                log.info("card tapped on an unplugged reader: not seen (card %s)", card.name)
                return False
            self._taps.append(card)
            log.debug("card tapped (card %s)", card.name)
            self._cond.notify_all()
            return True

    def place(self, card: Card) -> bool:
        """Put `card` on the reader until `remove()`. Replaces whatever was in the field."""
        with self._cond:
            if not self._plugged or self._closed:
                return False
            self._end_session()
            self._field = card
            self._field_is_tap = False
            log.debug("card placed (card %s)", card.name)
            self._cond.notify_all()
            return True

    def remove(self) -> None:
        """Take the card in the field away (an open session's next transmit raises CardRemovedError)."""
        with self._cond:
            if self._field is not None:
                log.debug("card removed from the field (card %s)", self._field.name)
                self._empty_field()
            self._end_session()
            self._cond.notify_all()

    def unplug(self) -> None:
        """The reader disappears (USB pulled): the field and waiting taps are lost, waiters raise."""
        with self._cond:
            self._plugged = False
            self._field = None
            self._taps.clear()
            self._removal_pending = False
            self._end_session()
            log.info("reader %s unplugged", self.name)
            self._cond.notify_all()

    def plug(self) -> None:
        with self._cond:
            self._plugged = True
            log.info("reader %s plugged in", self.name)
            self._cond.notify_all()

    @property
    def pending_taps(self) -> int:
        with self._cond:
            return len(self._taps)

    # -- CardReader --------------------------------------------------------------------------------

    def wait_for_card(self, timeout: float) -> SimSession | None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                self._check_available()
                if self._removal_pending:
                    self._removal_pending = False
                    return None
                session = self._next_session()
                if session is not None:
                    return session
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def status(self) -> ReaderStatus:
        with self._cond:
            if self._closed:
                return ReaderStatus("absent", self.name, "closed")
            if not self._plugged:
                return ReaderStatus("absent", self.name, "simulated reader unplugged")
            if self._field is not None or self._taps:
                return ReaderStatus("card_present", self.name)
            return ReaderStatus("ready", self.name)

    def describe(self) -> dict[str, str]:
        """The simulated reader and the card in its field (without taking a tap out of the queue)."""
        with self._cond:
            self._check_available()
            card = self._field or (self._taps[0] if self._taps else None)
            out = {"driver": "walletpos simulated reader (in-process, no radio)", "reader": self.name,
                   "card": "present" if card is not None else "none"}
            if card is not None:
                out["atr"] = card.atr.hex().upper()
            return out

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._field = None
            self._taps.clear()
            self._end_session()
            self._cond.notify_all()

    # -- inside (all called with the condition's lock held, except _transmit/_close_session) ----------

    def _check_available(self) -> None:
        if self._closed:
            raise ReaderUnavailableError(f"simulated reader {self.name} is closed")
        if not self._plugged:
            raise ReaderUnavailableError(f"simulated reader {self.name} is unplugged; plug it in again")

    def _next_session(self) -> SimSession | None:
        if self._field is not None and self._field_is_tap:
            return None  # a tapped card gives one session only; closing it empties the field
        if self._field is None:
            if not self._taps:
                return None
            self._field = self._taps.popleft()
            self._field_is_tap = True
        self._end_session()
        card = self._field
        card.reset()  # power-on
        self._generation += 1
        self._session = SimSession(self, card, self._generation)
        return self._session

    def _end_session(self) -> None:
        if self._session is not None:
            self._session.closed = True
            self._session = None

    def _empty_field(self) -> None:
        self._field = None
        self._field_is_tap = False
        self._removal_pending = True

    def _transmit(self, session: SimSession, apdu: bytes) -> bytes:
        with self._cond:
            self._check_available()
            if session is not self._session or session.closed:
                raise CardRemovedError()
            card = session.card
            answer = b"" if card.removed else card.respond(apdu)
            if not answer:
                log.info("card left the field mid-transaction (card %s)", card.name)
                if self._field is card:
                    self._empty_field()
                self._end_session()
                self._cond.notify_all()
                raise CardRemovedError()
            return answer

    def _close_session(self, session: SimSession) -> None:
        with self._cond:
            session.closed = True
            if session is not self._session:
                return
            self._session = None
            if self._field is session.card and self._field_is_tap:
                self._empty_field()
            self._cond.notify_all()
