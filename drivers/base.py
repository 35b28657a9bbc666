"""The two driver interfaces the rest of walletpos sees.

`CardReader` hands out `CardSession`s: `transmit(apdu) -> response data + SW1 SW2`. A session is
also the `ApduTransport` (terminal/core/emv.py) the pure EMV kernel talks to. `CodeScanner` yields `ScannedCode`s from a
frame source (camera device, video file, image folder, RTSP URL, simulator); the same decoding path
serves a live camera and a file.

Hardware comes and goes. A reader that is pulled, a camera that disappears, a card taken away
mid-transaction: each is a `ReaderStatus` change or a typed error (`CardRemovedError`,
`ReaderUnavailableError`), never a crash. Drivers report state; they never decide payments.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from terminal.errors import CardError, ReaderError

ReaderState = Literal["ready", "card_present", "absent", "error", "starting"]


class CardRemovedError(CardError):
    """The card left the field mid-transaction: the customer should tap again."""

    title = "Card removed"

    def __init__(self, message: str = "the card was removed before the terminal finished; tap again") -> None:
        super().__init__(message, outcome="tap_again")


class ReaderUnavailableError(ReaderError):
    """The reader is not connected (unplugged, daemon down) or cannot be opened."""

    title = "Reader unavailable"


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    """What a reader or camera is doing right now, for status bars and diagnostics."""

    state: ReaderState
    name: str
    detail: str = ""


class CardSession(abc.ABC):
    """One card in the field. Closing it releases the card (and the reader for the next one)."""

    uid: bytes | None = None
    atr: bytes | None = None

    @abc.abstractmethod
    def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU; return response data followed by SW1 SW2.
        Raises CardRemovedError when the card is gone, ReaderUnavailableError when the reader is."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> CardSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CardReader(abc.ABC):
    """A contactless reader. `wait_for_card` blocks up to `timeout` seconds (never forever)."""

    name: str = "reader"

    @abc.abstractmethod
    def wait_for_card(self, timeout: float) -> CardSession | None:
        """The next card presented, or None when none came within `timeout`.
        Raises ReaderUnavailableError when the reader is absent (the caller retries later)."""

    @abc.abstractmethod
    def status(self) -> ReaderStatus: ...

    def describe(self) -> dict[str, str]:
        """What the driver can tell about the device (driver, model, firmware, the card's ATR), for
        diagnostics; the default names the driver only. Raises ReaderUnavailableError like a wait."""
        return {"driver": type(self).__name__}

    @abc.abstractmethod
    def close(self) -> None:
        """Release the reader (idempotent)."""

    def __enter__(self) -> CardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class ScannedCode:
    """One decoded code: its exact text, symbology ("qr", ...), when (UTC epoch seconds) and where."""

    text: str
    symbology: str
    at: float
    source: str = ""
    decode_ms: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


class CodeScanner(abc.ABC):
    """A camera (or any frame source) with the decoding pipeline behind it."""

    name: str = "camera"

    @abc.abstractmethod
    def codes(self, *, max_frames: int | None = None, timeout: float | None = None) -> Iterator[ScannedCode]:
        """Decoded codes as they are read (one per presentation: debounced), until the source
        ends, `max_frames` frames were read, or `timeout` seconds passed."""

    @abc.abstractmethod
    def status(self) -> ReaderStatus: ...

    def prepare(self) -> None:  # noqa: B027 (a hook with nothing to do by default)
        """Open the source now, without reading codes, so that its status says whether it works
        before the first sale needs it (a source that opens on first read has nothing to do)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the camera (idempotent)."""

    def __enter__(self) -> CodeScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
