"""Contactless readers driven directly by nfcpy (PN53x, ACR122U, RC-S380 ... and nfcpy's UDP driver).

`NfcReader("usb:072f:2200")` opens the reader on the first `wait_for_card`; the device path is
nfcpy's: `usb[:vid[:pid]]`, `usb[:bus[:dev]]`, `tty:USB0:pn532`, or `udp:host:port` for the simulated
RF link (the card is then another process, drivers/sim/nfc_card.py).

`wait_for_card(timeout)` senses NFC-A 106 kbps targets (`clf.sense(RemoteTarget("106A"))`) until one
answers or the timeout passes, and activates an ISO-DEP card (RATS → `nfc.tag.tt4.Type4Tag`). Cards
that are not ISO-DEP (MIFARE Classic, Type 2 tags) are ignored: they cannot pay. The session's
`transmit` is an ISO-DEP exchange (`Type4Tag.transceive`: chaining, R-block retries and WTX are
nfcpy's), plus the 61xx/6Cxx handling every transport shares (`drivers.apdu.complete_response`).

Errors: a card that stops answering (ISO-DEP timeouts after nfcpy's retries, a broken link) is a
`CardRemovedError`; a device path nfcpy cannot open, or a device that fails (unplugged) is a
`ReaderUnavailableError`, and the reader is opened again on the next `wait_for_card`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import nfc
import nfc.clf
import nfc.tag
from nfc.tag.tt4 import Type4Tag, Type4TagCommandError

from drivers.apdu import complete_response
from drivers.base import CardReader, CardRemovedError, CardSession, ReaderStatus, ReaderUnavailableError
from terminal.errors import CardError

log = logging.getLogger("walletpos.nfc")

DEVICE_KINDS = ("usb", "tty", "com", "udp")
_SENSE_STEP = 0.02  # longest single wait for an answer during the sense on the UDP link (see _bounded_sense)
_SENSE_INTERVAL = 0.02  # pause between sense rounds when no card answered at once (a real device)
_UDP_SENSE_INTERVAL = 0.005  # ... on the UDP link, where a round costs a few datagrams


class NfcSession(CardSession):
    """One activated ISO-DEP card. `transmit` returns data + SW1 SW2."""

    def __init__(self, reader: NfcReader, tag: Type4Tag, uid: bytes) -> None:
        self._reader = reader
        self._tag: Type4Tag | None = tag
        self.uid = uid
        self.atr = None  # ISO-DEP cards have an ATS, not an ATR; nfcpy does not keep it
        self._lock = threading.Lock()

    def transmit(self, apdu: bytes) -> bytes:
        apdu = bytes(apdu)
        if len(apdu) < 4:
            raise ValueError(f"a command APDU has at least 4 bytes, got {len(apdu)}")
        with self._lock:
            return complete_response(self._exchange, apdu)

    def _exchange(self, apdu: bytes) -> bytes:
        tag = self._tag
        if tag is None:
            raise CardRemovedError("the card session is closed; tap again")
        try:
            response = tag.transceive(bytearray(apdu))
        except Type4TagCommandError as exc:
            if exc.errno == nfc.tag.PROTOCOL_ERROR:
                raise CardError(f"the card broke the ISO-DEP protocol ({exc}); tap again",
                                outcome="tap_again") from exc
            raise CardRemovedError(f"the card stopped answering ({exc}); tap again") from exc
        except nfc.clf.CommunicationError as exc:
            raise CardRemovedError(f"the card left the field ({type(exc).__name__}: {exc}); tap again") from exc
        except OSError as exc:
            self._reader._lost(exc)
            raise ReaderUnavailableError(f"NFC reader {self._reader.path} failed: {exc}") from exc
        if response is None or len(response) < 2:
            raise CardRemovedError("the card answered without a status word (left the field?); tap again")
        return bytes(response)

    def close(self) -> None:
        with self._lock:
            tag, self._tag = self._tag, None
        if tag is not None:
            self._reader._release()


class NfcReader(CardReader):
    """An nfcpy reader at a device path (see the module docstring)."""

    def __init__(self, path: str = "usb") -> None:
        self.path = path.strip()
        self.name = f"nfc:{self.path}"
        self._clf: nfc.ContactlessFrontend | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._status = ReaderStatus("starting", self.name)

    # -- device -----------------------------------------------------------------------------------

    def _frontend(self) -> nfc.ContactlessFrontend:
        with self._lock:
            if self._closed:
                raise ReaderUnavailableError(f"{self.name}: the reader was closed")
            if self._clf is not None:
                return self._clf
            kind = self.path.split(":", 1)[0]
            if kind not in DEVICE_KINDS:
                self._status = ReaderStatus("error", self.name, "bad device path")
                raise ReaderUnavailableError(
                    f"NFC device path {self.path!r} is not one nfcpy knows: use usb[:vendor:product] "
                    "(e.g. usb:072f:2200), tty:<port>:<driver> (e.g. tty:USB0:pn532) or udp:<host>:<port>")
            clf = nfc.ContactlessFrontend()
            try:
                opened = clf.open(self.path)
            except (OSError, ValueError) as exc:  # socket.gaierror is an OSError
                self._status = ReaderStatus("absent", self.name, str(exc))
                raise ReaderUnavailableError(f"NFC reader {self.path} cannot be opened: {exc}") from exc
            if not opened:
                self._status = ReaderStatus("absent", self.name, "not found")
                raise ReaderUnavailableError(
                    f"no NFC reader at {self.path} (not plugged in, no access to the USB device, or claimed by "
                    "another driver such as pn533_usb)")
            self._clf = clf
            self._status = ReaderStatus("ready", self.name, str(clf))
            log.info("NFC reader opened: %s", clf)
            return clf

    def _lost(self, exc: BaseException) -> None:
        """The device failed (unplugged): forget it, so the next wait opens it again."""
        with self._lock:
            clf, self._clf = self._clf, None
            self._status = ReaderStatus("absent", self.name, str(exc))
        log.warning("NFC reader %s lost: %s", self.path, exc)
        if clf is not None:
            clf.close()

    def _release(self) -> None:
        """End the card's activation: RF off, so the card resets (and the next sense starts clean)."""
        clf = self._clf
        if clf is None or clf.device is None:
            return
        try:
            clf.device.mute()
        except OSError as exc:
            self._lost(exc)
        if self._status.state == "card_present":
            self._status = ReaderStatus("ready", self.name, self._status.detail)

    @contextmanager
    def _bounded_sense(self, clf: nfc.ContactlessFrontend, deadline: float) -> Iterator[None]:
        """Bound every wait of the sense on nfcpy's UDP link (the simulated RF link) to a short step.

        nfcpy's UDP driver waits a fixed 1 s for SENS_RES and 0.5 s for each SDD_RES and SEL_RES. On
        the UDP link an answer comes within a millisecond or never: the card process takes up its
        socket again between activations (nfcpy's `listen` closes and binds it), and a request that
        arrives in that gap, or when the card's listen window ends between SENS_RES and SDD_REQ, is
        lost. nfcpy then waits out its full timeout: that was the ~650 ms at p99 of `bench_tap`'s
        nfc_udp figure (0.5 s for a lost SDD_RES, plus the next sense round). Each wait is bounded to
        `_SENSE_STEP` (and the caller's deadline), so a lost request costs one step and the reader
        asks again. The activation after the sense (RATS) keeps nfcpy's own timeouts. Real devices
        time out in their firmware and are left alone."""
        device = clf.device
        original: Callable[..., object] | None = getattr(device, "_recv_data", None)
        if not self.path.startswith("udp") or original is None:
            yield
            return

        def recv(timeout: float | None, *brty: str) -> object:
            if timeout is not None:
                timeout = max(0.005, min(timeout, _SENSE_STEP, deadline - time.monotonic()))
            return original(timeout, *brty)

        device._recv_data = recv
        try:
            yield
        finally:
            del device._recv_data  # back to the class's method

    # -- CardReader -------------------------------------------------------------------------------

    def wait_for_card(self, timeout: float) -> NfcSession | None:
        deadline = time.monotonic() + max(0.0, timeout)
        clf = self._frontend()
        while True:
            session = self._sense_once(clf, deadline)
            if session is not None:
                return session
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return None
            time.sleep(min(_UDP_SENSE_INTERVAL if self.path.startswith("udp") else _SENSE_INTERVAL, remaining))

    def _sense_once(self, clf: nfc.ContactlessFrontend, deadline: float) -> NfcSession | None:
        try:
            with self._bounded_sense(clf, deadline):
                target = clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1)
            if target is None:
                return None
            if target.sel_res is None or not target.sel_res[0] & 0x20:
                log.debug("ignoring an NFC-A target that is not ISO-DEP (SEL_RES %s)",
                          bytes(target.sel_res or b"").hex())
                return None
            tag = nfc.tag.activate(clf, target)
        except nfc.clf.CommunicationError as exc:
            log.debug("sense/activation failed: %s", exc)
            return None
        except nfc.clf.UnsupportedTargetError as exc:
            raise ReaderUnavailableError(f"NFC reader {self.path} cannot poll for NFC-A cards: {exc}") from exc
        except OSError as exc:  # ENODEV, USB errors: the device went away
            if self._closed:
                return None  # closed from another thread while waiting
            self._lost(exc)
            raise ReaderUnavailableError(f"NFC reader {self.path} failed: {exc}; check that it is plugged in") from exc
        if not isinstance(tag, Type4Tag):
            log.debug("activation gave %r, not an ISO-DEP card", tag)
            self._release()
            return None
        uid = bytes(target.sdd_res or b"")
        self._status = ReaderStatus("card_present", self.name, str(clf))
        return NfcSession(self, tag, uid)

    def status(self) -> ReaderStatus:
        return self._status

    def describe(self) -> dict[str, str]:
        """The device as nfcpy knows it (opened if it is not yet): vendor, product and chipset."""
        clf = self._frontend()
        device = clf.device
        out = {"driver": "nfcpy", "device": self.path}
        if device is not None:
            for key, value in (("vendor", device.vendor_name), ("model", device.product_name),
                               ("chipset", device.chipset_name)):
                if value:
                    out[key] = str(value)
        return out

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clf, self._clf = self._clf, None
        if clf is not None:
            clf.close()
        self._status = ReaderStatus("absent", self.name, "closed")
