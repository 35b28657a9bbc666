"""Contactless (and contact) readers through PC/SC: pcscd on Linux, WinSCard elsewhere, via pyscard.

`PcscReader("ACR122")` picks the first reader whose name contains the pattern (case-insensitive) or
matches it as a regular expression; the empty pattern takes the first reader. It uses pyscard's
low-level `smartcard.scard` API on one PC/SC context (never pyscard's singleton CardMonitor):

- `wait_for_card(timeout)` waits with SCardGetStatusChange for a card that is present *now* and
  connects to it (any protocol, exclusive by default). A card left lying on the reader is returned
  again by the next call: a caller that waits for the field to empty calls `wait_for_card` until it
  returns None.
- `PcscSession.transmit(apdu)` returns response data + SW1 SW2 and handles the T=0 status words
  transparently: 61xx (fetch the rest with GET RESPONSE) and 6Cxx (resend with Le = xx).
- The reader list is read again on every wait, so readers plugged in later are found; when pcscd goes
  away and comes back (a restart, a package upgrade), the context is established again.

Errors: a card that left the field (SCARD_W_REMOVED_CARD, SCARD_E_NO_SMARTCARD, a failed or empty
transmission) is a `CardRemovedError`; no pcscd, no matching reader, a reader that was unplugged or is
held by another program is a `ReaderUnavailableError`. Messages carry PC/SC's own text.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Literal

from smartcard import scard

from drivers.apdu import complete_response
from drivers.base import CardReader, CardRemovedError, CardSession, ReaderStatus, ReaderUnavailableError
from terminal.errors import CardError

log = logging.getLogger("walletpos.pcsc")

ShareMode = Literal["exclusive", "shared"]
Disposition = Literal["leave", "reset", "unpower"]

_SHARE = {"exclusive": scard.SCARD_SHARE_EXCLUSIVE, "shared": scard.SCARD_SHARE_SHARED}
_DISPOSITION = {"leave": scard.SCARD_LEAVE_CARD, "reset": scard.SCARD_RESET_CARD,
                "unpower": scard.SCARD_UNPOWER_CARD}


def _code(hresult: int) -> int:
    return hresult & 0xFFFFFFFF


def _c(name: str) -> int:
    return _code(getattr(scard, name))


OK = 0
E_TIMEOUT = _c("SCARD_E_TIMEOUT")
E_CANCELLED = _c("SCARD_E_CANCELLED")
E_SHARING_VIOLATION = _c("SCARD_E_SHARING_VIOLATION")

# The card is gone (or stopped answering, which for a contactless card means the same).
CARD_GONE = frozenset(_c(n) for n in (
    "SCARD_W_REMOVED_CARD", "SCARD_E_NO_SMARTCARD", "SCARD_W_UNPOWERED_CARD", "SCARD_W_UNRESPONSIVE_CARD",
    "SCARD_W_RESET_CARD", "SCARD_E_NOT_TRANSACTED", "SCARD_E_COMM_DATA_LOST", "SCARD_E_CARD_UNSUPPORTED",
    "SCARD_E_PROTO_MISMATCH"))
# pcscd, the context or the reader is gone: establish a new context and read the reader list again.
SERVICE_GONE = frozenset(_c(n) for n in (
    "SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED", "SCARD_E_INVALID_HANDLE", "SCARD_F_COMM_ERROR",
    "SCARD_E_NO_READERS_AVAILABLE", "SCARD_E_READER_UNAVAILABLE", "SCARD_E_UNKNOWN_READER",
    "SCARD_E_INVALID_VALUE", "SCARD_E_NO_MEMORY", "SCARD_F_INTERNAL_ERROR"))

_PRESENT = scard.SCARD_STATE_PRESENT
_MUTE = scard.SCARD_STATE_MUTE
_GONE_STATES = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE


def pcsc_message(hresult: int) -> str:
    """PC/SC's own text for a result code, with the code."""
    try:
        text = str(scard.SCardGetErrorMessage(hresult)).strip().rstrip(".")
    except (TypeError, ValueError):
        text = "unknown error"
    return f"{text} (0x{_code(hresult):08X})"


def match_reader(readers: list[str], pattern: str) -> str | None:
    """The first reader whose name contains `pattern` (case-insensitive) or matches it as a regular
    expression (re.search); the first reader of all for an empty pattern."""
    if not readers:
        return None
    if not pattern:
        return readers[0]
    lowered = pattern.lower()
    for name in readers:
        if lowered in name.lower():
            return name
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error:
        return None
    return next((name for name in readers if regex.search(name)), None)


class PcscSession(CardSession):
    """One connected card. `transmit` returns data + SW1 SW2; 61xx and 6Cxx are handled here."""

    def __init__(self, reader: PcscReader, hcard: int, protocol: int, reader_name: str, atr: bytes,
                 disposition: Disposition = "leave") -> None:
        self._reader = reader
        self._hcard: int | None = hcard
        self.protocol = protocol
        self.reader_name = reader_name
        self.atr = atr
        self.disposition = disposition
        self._uid: bytes | None = None
        self._uid_read = False
        self._lock = threading.Lock()

    @property
    def uid(self) -> bytes | None:  # type: ignore[override]  # read from the reader on first use
        """The contactless UID from the reader (PC/SC pseudo-APDU GET DATA FF CA 00 00 00), read on
        first use; None when the reader or card does not give one (a contact card)."""
        if not self._uid_read:
            self._uid_read = True
            response = self._transmit_raw(bytes.fromhex("FFCA000000"))
            if len(response) > 2 and response[-2:] == b"\x90\x00":
                self._uid = response[:-2]
        return self._uid

    @property
    def protocol_name(self) -> str:
        return {scard.SCARD_PROTOCOL_T0: "T=0", scard.SCARD_PROTOCOL_T1: "T=1"}.get(self.protocol, "raw")

    def transmit(self, apdu: bytes) -> bytes:
        apdu = bytes(apdu)
        if len(apdu) < 4:
            raise ValueError(f"a command APDU has at least 4 bytes, got {len(apdu)}")
        with self._lock:
            return complete_response(self._transmit_raw, apdu)

    def _transmit_raw(self, apdu: bytes) -> bytes:
        hcard = self._hcard
        if hcard is None:
            raise CardRemovedError("the card session is closed; tap again")
        hresult, response = scard.SCardTransmit(hcard, self.protocol, list(apdu))
        code = _code(hresult)
        if code != OK:
            raise self._reader._error_for(code, "transmit")
        if len(response) < 2:
            # vpcd (and some readers) report a card that vanished mid-command as an empty answer.
            raise CardRemovedError("the card stopped answering (left the field); tap again")
        return bytes(response)

    def close(self) -> None:
        with self._lock:
            hcard, self._hcard = self._hcard, None
        if hcard is not None:
            hresult = scard.SCardDisconnect(hcard, _DISPOSITION[self.disposition])
            if _code(hresult) != OK:
                log.debug("disconnect from %s: %s", self.reader_name, pcsc_message(hresult))


class PcscReader(CardReader):
    """A PC/SC reader chosen by name pattern (see `match_reader`)."""

    def __init__(self, pattern: str = "", *, share: ShareMode = "exclusive",
                 protocols: Literal["any", "T0", "T1"] = "any", disposition: Disposition = "leave") -> None:
        self.pattern = pattern
        self.name = f"pcsc:{pattern}" if pattern else "pcsc"
        self.share = share
        self.protocols = {"any": scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
                          "T0": scard.SCARD_PROTOCOL_T0, "T1": scard.SCARD_PROTOCOL_T1}[protocols]
        self.disposition = disposition
        self.reader_name: str | None = None
        self.context_count = 0  # contexts established so far (more than one: pcscd came back)
        self._ctx: int | None = None
        self._ctx_lock = threading.Lock()
        self._closed = False

    # -- context and reader list ------------------------------------------------------------------

    def _context(self) -> int:
        with self._ctx_lock:
            if self._closed:
                raise ReaderUnavailableError(f"{self.name}: the reader was closed")
            if self._ctx is None:
                hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
                if _code(hresult) != OK:
                    raise ReaderUnavailableError(
                        f"PC/SC service not available: {pcsc_message(hresult)}; is pcscd running?")
                self._ctx = ctx
                self.context_count += 1
                log.debug("PC/SC context established (#%d)", self.context_count)
            return self._ctx

    def _drop_context(self) -> None:
        with self._ctx_lock:
            ctx, self._ctx = self._ctx, None
            self.reader_name = None
        if ctx is not None:
            scard.SCardReleaseContext(ctx)

    def _error_for(self, code: int, what: str) -> CardError | ReaderUnavailableError:
        """The typed error for a failed PC/SC call (and a fresh context next time if pcscd left)."""
        reader = self.reader_name or self.name
        if code in CARD_GONE:
            return CardRemovedError(f"the card left the field during {what} on {reader} ({pcsc_message(code)}); "
                                    "tap again")
        if code == E_SHARING_VIOLATION:
            return ReaderUnavailableError(f"{reader} is in use by another program ({pcsc_message(code)}); close it "
                                          "and retry")
        self._drop_context()
        if code in SERVICE_GONE:
            return ReaderUnavailableError(f"{reader} is not available ({pcsc_message(code)}); check that it is "
                                          "plugged in and pcscd is running")
        return ReaderUnavailableError(f"{what} on {reader} failed: {pcsc_message(code)}")

    def readers(self) -> list[str]:
        """The names of all PC/SC readers now (empty when none); ReaderUnavailableError without pcscd."""
        for attempt in (1, 2):
            ctx = self._context()
            hresult, names = scard.SCardListReaders(ctx, [])
            code = _code(hresult)
            if code == OK:
                return list(names)
            if code == _c("SCARD_E_NO_READERS_AVAILABLE"):
                return []
            self._drop_context()
            if attempt == 2 or code not in SERVICE_GONE:
                raise ReaderUnavailableError(f"cannot list PC/SC readers: {pcsc_message(code)}; is pcscd running?")
        return []

    def _find_reader(self) -> str:
        names = self.readers()
        name = match_reader(names, self.pattern)
        if name is None:
            listed = ", ".join(repr(n) for n in names) or "none"
            what = f"matching {self.pattern!r}" if self.pattern else "at all"
            raise ReaderUnavailableError(f"no PC/SC reader {what} (readers: {listed})")
        self.reader_name = name
        return name

    # -- CardReader -------------------------------------------------------------------------------

    def wait_for_card(self, timeout: float) -> PcscSession | None:
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            return self._wait_for_card(deadline)
        except ReaderUnavailableError:
            if self._closed or self._ctx is not None:
                raise
            # The context died (pcscd restarted): one more try on a fresh one.
            log.info("PC/SC context lost; establishing a new one")
            return self._wait_for_card(deadline)

    def _wait_for_card(self, deadline: float) -> PcscSession | None:
        name = self._find_reader()
        ctx = self._context()
        # Start from "unaware": the first call answers at once with the reader's state now, so a
        # card lying on the reader is found again; later calls block until the state changes.
        state = scard.SCARD_STATE_UNAWARE
        while True:
            remaining_ms = 0 if state == scard.SCARD_STATE_UNAWARE else (
                max(0, int((deadline - time.monotonic()) * 1000)))
            hresult, states = scard.SCardGetStatusChange(ctx, remaining_ms, [(name, state)])
            code = _code(hresult)
            if code == E_CANCELLED:
                return None
            if code == E_TIMEOUT:
                return None
            if code != OK:
                raise self._error_for(code, "waiting for a card")
            event = states[0][1]
            state = event & ~scard.SCARD_STATE_CHANGED
            if event & _GONE_STATES:
                self.reader_name = None
                raise ReaderUnavailableError(f"{name} is gone (unplugged?)")
            if event & _PRESENT and not event & _MUTE:
                session = self._connect(ctx, name)
                if session is not None:
                    return session
            if time.monotonic() >= deadline:
                return None
            if state == scard.SCARD_STATE_UNAWARE:
                state = scard.SCARD_STATE_EMPTY

    def _connect(self, ctx: int, name: str) -> PcscSession | None:
        hresult, hcard, protocol = scard.SCardConnect(ctx, name, _SHARE[self.share], self.protocols)
        code = _code(hresult)
        if code in CARD_GONE:
            log.debug("card on %s went away before connect: %s", name, pcsc_message(code))
            return None
        if code != OK:
            raise self._error_for(code, "connecting to the card")
        hresult, _reader, _state, _proto, atr = scard.SCardStatus(hcard)
        if _code(hresult) != OK:
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
            if _code(hresult) in CARD_GONE:
                return None
            raise self._error_for(_code(hresult), "reading the card status")
        log.debug("card on %s, ATR %s, protocol %d", name, bytes(atr).hex(), protocol)
        return PcscSession(self, hcard, protocol, name, bytes(atr), self.disposition)

    def status(self) -> ReaderStatus:
        try:
            name = self._find_reader()
            ctx = self._context()
            hresult, states = scard.SCardGetStatusChange(ctx, 0, [(name, scard.SCARD_STATE_UNAWARE)])
        except ReaderUnavailableError as exc:
            return ReaderStatus("absent", self.name, exc.message)
        code = _code(hresult)
        if code != OK:
            if code in SERVICE_GONE:
                self._drop_context()
            return ReaderStatus("error", self.name, pcsc_message(code))
        event = states[0][1]
        if event & _GONE_STATES:
            return ReaderStatus("absent", self.name, f"{name} is gone")
        if event & _PRESENT:
            return ReaderStatus("card_present", self.name, name)
        return ReaderStatus("ready", self.name, name)

    def describe(self) -> dict[str, str]:
        """The reader's name, its state and the ATR of a card on it (from the reader state, without
        connecting to the card), and what the IFD handler tells of the device: vendor, model,
        firmware version and serial number (SCardGetAttrib over a direct connection; readers and
        drivers that do not say are left out)."""
        name = self._find_reader()
        ctx = self._context()
        out = {"driver": "PC/SC (pcscd)", "reader": name}
        hresult, states = scard.SCardGetStatusChange(ctx, 0, [(name, scard.SCARD_STATE_UNAWARE)])
        if _code(hresult) == OK:
            event, atr = states[0][1], bytes(states[0][2] or b"")
            out["card"] = "present" if event & _PRESENT and not event & _MUTE else (
                "mute" if event & _MUTE else "none")
            if atr and event & _PRESENT:
                out["atr"] = atr.hex().upper()
        hresult, hcard, _protocol = scard.SCardConnect(ctx, name, scard.SCARD_SHARE_DIRECT, 0)
        if _code(hresult) != OK:
            out["attributes"] = f"not readable ({pcsc_message(hresult)})"
            return out
        try:
            for key, attr in (("vendor", "SCARD_ATTR_VENDOR_NAME"), ("model", "SCARD_ATTR_VENDOR_IFD_TYPE"),
                              ("firmware", "SCARD_ATTR_VENDOR_IFD_VERSION"),
                              ("serial", "SCARD_ATTR_VENDOR_IFD_SERIAL_NO")):
                hresult, value = scard.SCardGetAttrib(hcard, getattr(scard, attr))
                raw = bytes(value or b"")
                if _code(hresult) != OK or not raw:
                    continue
                if key == "firmware" and len(raw) == 4:  # DWORD 0xMMmmbbbb: major, minor, build
                    number = int.from_bytes(raw, "little")
                    out[key] = f"{number >> 24}.{(number >> 16) & 0xFF}.{number & 0xFFFF}"
                else:
                    out[key] = raw.rstrip(b"\0").decode("ascii", "replace").strip()
        finally:
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
        return out

    def cancel(self) -> None:
        """Wake a `wait_for_card` blocked in another thread (it returns None)."""
        ctx = self._ctx
        if ctx is not None:
            scard.SCardCancel(ctx)

    def close(self) -> None:
        if self._closed:
            return
        self.cancel()
        self._closed = True
        self._drop_context()
