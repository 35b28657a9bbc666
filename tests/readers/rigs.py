"""One "rig" per reader driver: the reader under test and a way to put cards into its real field:

- sim:  drivers.sim.reader.SimReader, the card placed in-process;
- pcsc: PcscReader on pcscd's "Virtual PCD" reader, the card served by VpcdCardServer over vpcd's TCP;
- nfc:  NfcReader on nfcpy's UDP driver, the card a separate process (drivers.sim.nfc_card).

Cards are named by profile (drivers/sim/cards.py) or by a `module:factory` for the stand-in test card,
because the nfc card lives in another process.
"""

from __future__ import annotations

import abc
import importlib
import time

from drivers.base import CardReader
from drivers.sim.pcscd import PcscdHandle

STANDIN = "tests.readers.standin:StandInCard"
SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
VISA_AID = bytes.fromhex("A0000000031010")


def build_card(profile: str = "visa", factory: str | None = None) -> object:
    """A card object from a profile name or a `module:factory` string."""
    if factory:
        module, _, attr = factory.partition(":")
        return getattr(importlib.import_module(module), attr)()
    from drivers.sim.cards import make_card

    return make_card(profile)


class Rig(abc.ABC):
    """A reader under test and a way to put a card into its field and take it out."""

    kind: str
    reader: CardReader
    card: object | None = None  # the card object, where it lives in this process

    @abc.abstractmethod
    def insert(self, profile: str = "visa", factory: str | None = None) -> None: ...

    @abc.abstractmethod
    def remove(self) -> None: ...

    def close(self) -> None:
        self.reader.close()


class SimRig(Rig):
    kind = "sim"

    def __init__(self) -> None:
        from drivers.simreader import SimReader

        self.reader = SimReader()

    def insert(self, profile: str = "visa", factory: str | None = None) -> None:
        self.card = build_card(profile, factory)
        self.reader.place(self.card)  # type: ignore[attr-defined]

    def remove(self) -> None:
        self.reader.remove()  # type: ignore[attr-defined]


class PcscRig(Rig):
    kind = "pcsc"

    def __init__(self, handle: PcscdHandle) -> None:
        from drivers.pcsc import PcscReader
        from drivers.sim.vpcd import VpcdCardServer

        self.handle = handle
        self.server = VpcdCardServer(port=handle.vpcd_port)
        self.reader = PcscReader(handle.reader)
        self.wait_empty()

    def insert(self, profile: str = "visa", factory: str | None = None) -> None:
        self.card = build_card(profile, factory)
        self.server.insert(self.card)  # type: ignore[arg-type]

    def remove(self) -> None:
        self.server.remove()

    def wait_empty(self, timeout: float = 2.0) -> None:
        """pcscd notices a removal at its next presence poll (every 400 ms): wait until it has, so a
        test starts (and leaves) with an empty reader, as a real reader would be."""
        deadline = time.monotonic() + timeout
        while self.reader.status().state == "card_present" and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.server.close()
        self.wait_empty()
        super().close()


class NfcRig(Rig):
    kind = "nfc"

    def __init__(self) -> None:
        from drivers.nfc import NfcReader
        from drivers.sim.nfc_card import free_udp_port

        self.port = free_udp_port()
        self.reader = NfcReader(f"udp:localhost:{self.port}")
        self._card_cm = None
        self.process = None

    def insert(self, profile: str = "visa", factory: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        from drivers.sim.nfc_card import start_nfc_card

        self._stop_card()
        self._card_cm = start_nfc_card(profile, self.port, card_factory=factory, extra_args=extra_args)
        self.process = self._card_cm.__enter__()
        self.card = None  # lives in the card process

    def remove(self) -> None:
        if self.process is not None:
            self.process.remove()

    def _stop_card(self) -> None:
        if self._card_cm is not None:
            cm, self._card_cm, self.process = self._card_cm, None, None
            cm.__exit__(None, None, None)

    def close(self) -> None:
        self._stop_card()
        super().close()
