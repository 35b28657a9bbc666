"""Device watchers: one thread per device (card reader, camera) that opens it, reopens it with
exponential backoff when it disappears (a pulled USB reader, a camera that stops delivering frames),
keeps its state for the status bar and, only while armed, hands each presentation (a card in the
field, a decoded code) on. The checkout (`terminal.checkout`) and a transit gate's lane
(`terminal.gate.lane`) both race a reader and a camera with them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from drivers.base import (
    CardReader,
    CodeScanner,
    ReaderStatus,
    ReaderUnavailableError,
)
from terminal.errors import ReaderError, WalletposError

log = logging.getLogger("walletpos.checkout")


class DeviceWatcher(threading.Thread):
    """One device, kept open (reopened with backoff), its presentations queued while armed."""

    kind = "device"

    def __init__(self, opener: Callable[[], Any], deliver: Callable[[str, Any], None], *,
                 backoff_max: float = 5.0) -> None:
        super().__init__(name=f"watch-{self.kind}", daemon=True)
        self.opener = opener
        self.deliver = deliver
        self.backoff_max = backoff_max
        self.armed = threading.Event()
        self.stopped = threading.Event()
        self.device: Any = None
        self._status = ReaderStatus("starting", self.kind)

    @property
    def status(self) -> ReaderStatus:
        return self._status

    def stop(self) -> None:
        self.stopped.set()
        self.armed.set()  # wake a sleeping watcher

    def _open(self, backoff: float) -> float:
        try:
            self.device = self.opener()
            self._status = self.device.status()
            log.info("%s opened: %s", self.kind, self._status.name)
            return 0.2
        except (ReaderError, OSError) as exc:
            self._status = ReaderStatus("absent", self.kind, str(exc))
            self.device = None
            self.stopped.wait(backoff)
            return min(self.backoff_max, backoff * 2)

    def _lost(self, exc: Exception) -> None:
        log.warning("%s lost: %s", self.kind, exc)
        self._status = ReaderStatus("absent", self.kind, str(exc))
        try:
            if self.device is not None:
                self.device.close()
        except (ReaderError, OSError):
            pass
        self.device = None

    def run(self) -> None:
        backoff = 0.2
        while not self.stopped.is_set():
            if self.device is None:
                backoff = self._open(backoff)
                continue
            try:
                self.poll()
            except (ReaderUnavailableError, OSError) as exc:
                self._lost(exc)
            except WalletposError as exc:  # a device error that is not a disconnect: report, keep going
                self._status = ReaderStatus("error", self.kind, exc.message)
                self.stopped.wait(0.5)
        if self.device is not None:
            self.device.close()

    def poll(self) -> None:
        raise NotImplementedError


class ReaderWatcher(DeviceWatcher):
    kind = "reader"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.need_removal = False
        self.done = threading.Event()

    def poll(self) -> None:
        reader: CardReader = self.device
        if not self.armed.is_set() and not self.need_removal:
            self._status = reader.status()
            self.armed.wait(0.5)
            return
        session = reader.wait_for_card(0.2)
        if session is None:
            self.need_removal = False
            self._status = reader.status()
            return
        if self.need_removal or not self.armed.is_set():
            session.close()  # the card of the last sale is still in the field: wait for it to go
            self.stopped.wait(0.05)
            return
        self._status = ReaderStatus("card_present", reader.name)
        self.done.clear()
        self.deliver("card", session)
        self.done.wait()  # the checkout reads the card, then releases it
        self.need_removal = True


class ScannerWatcher(DeviceWatcher):
    kind = "camera"

    def poll(self) -> None:
        scanner: CodeScanner = self.device
        if not self.armed.is_set():
            if scanner.status().state == "starting":
                scanner.prepare()  # opened now: the status bar says ready (or absent) before the first sale
            self._status = scanner.status()
            self.armed.wait(0.5)
            return
        for code in scanner.codes(timeout=0.5):
            if self.armed.is_set():
                self.deliver("code", code)
        self._status = scanner.status()


def release(kind: str, item: Any, reader: ReaderWatcher | None) -> None:
    """Give back a presentation nobody will use (a sale cancelled, a lane closing): a card's session
    is closed and the reader watcher may look for the next card."""
    if kind == "card":
        try:
            item.close()
        finally:
            if reader is not None:
                reader.done.set()
