"""A recorded card exchange as a card again: the transport a replay of a saved failed tap (or of a
shared vector's transcript) gives the EMV kernel, for `walletpos tap --replay FILE` and the
diagnostics screen.

The answers come from `drivers.sim.replay.ReplayCard` (how a command finds its recorded answer is
described there) over the trace made `replayable` (`terminal.core.traces`: the masked PAN replaced by
a Luhn-valid test PAN with the same first six and last four digits). A trace that ends with the card
leaving the field ends the same way: once the recorded answers are used up, the next command raises
`CardRemovedError`, as the reader did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.base import CardRemovedError
from drivers.sim.replay import ReplayCard
from terminal.core.traces import replayable


class ReplayTransport:
    """An `ApduTransport` answering from a recorded exchange (see the module docstring)."""

    def __init__(self, item: Mapping[str, Any]) -> None:
        self.item = replayable(item)
        self.card = ReplayCard(self.item)
        expected = item.get("expected") or {}
        self.ends_removed = bool(expected.get("card_left_field")) if isinstance(expected, Mapping) else False
        self.answers = sum(1 for step in self.item["data"] if step.get("response") is not None)
        meta = item.get("walletpos") or {}
        recorded_atr = meta.get("atr") if isinstance(meta, Mapping) else None
        self.atr: bytes = bytes.fromhex(recorded_atr) if isinstance(recorded_atr, str) and recorded_atr else \
            self.card.atr
        self.uid = self.card.uid
        self.sent = 0

    def transmit(self, apdu: bytes) -> bytes:
        if self.ends_removed and self.sent >= self.answers:
            raise CardRemovedError("the recorded card left the field here; tap again")
        self.sent += 1
        answer = self.card.respond(apdu)
        if not answer:
            raise CardRemovedError("the recorded card gave no answer; tap again")
        return answer


__all__ = ["ReplayTransport"]
