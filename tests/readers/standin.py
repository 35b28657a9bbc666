"""A small test card with the VirtualCard interface (drivers/sim/cards.py), for the transport
features the EMV profiles do not exercise: 61xx (GET RESPONSE), 6Cxx (wrong Le, resend), long
answers (ISO-DEP chaining), long commands, and leaving the field after a given number of APDUs.

It is a real card for the transports (they cannot tell it from a profile card), not a mock of
anything: the drivers under test run unchanged against it.

Commands it knows (CLA 00 unless said):
- SELECT PPSE (00 A4 04 00 0E 2PAY.SYS.DDF01 00) → a small FCI + 9000
- 00 CA 00 01 00: 200 bytes of data in 61xx pieces (GET RESPONSE 00 C0 00 00 Le)
- 00 CA 00 02 Le: 6C20 unless Le = 0x20, then 32 bytes + 9000
- 00 CA 00 03 Le: `long_size` bytes at once + 9000 (ISO-DEP chaining from the card)
- 80 EE 00 00 Lc data Le: echoes data + 9000 (ISO-DEP chaining from the reader)
- FF CA 00 00 00: the UID + 9000 (what PC/SC contactless readers answer)
"""

from __future__ import annotations

PPSE_NAME = b"2PAY.SYS.DDF01"
SELECT_PPSE = bytes([0x00, 0xA4, 0x04, 0x00, len(PPSE_NAME)]) + PPSE_NAME + b"\x00"
VISA_AID = bytes.fromhex("A0000000031010")


def _tlv(tag: bytes, value: bytes) -> bytes:
    assert len(value) < 0x80
    return tag + bytes([len(value)]) + value


PPSE_FCI = _tlv(
    b"\x6f",
    _tlv(b"\x84", PPSE_NAME)
    + _tlv(b"\xa5", _tlv(b"\xbf\x0c", _tlv(b"\x61", _tlv(b"\x4f", VISA_AID) + _tlv(b"\x87", b"\x01")))),
)


class StandInCard:
    """A VirtualCard-compatible test card (see the module docstring)."""

    def __init__(self, name: str = "standin", *, remove_after: int | None = None, long_size: int = 600,
                 uid: bytes = bytes.fromhex("08A1B2C3"),
                 atr: bytes = bytes.fromhex("3B8880010000000000718100F9")) -> None:
        self.name = name
        self.pan = ""
        self.atr = atr
        self.uid = uid
        self.remove_after = remove_after
        self.long_size = long_size
        self.apdu_count = 0
        self.removed = False
        self.resets = 0
        self._pending = b""

    def reset(self) -> None:
        self.resets += 1
        self._pending = b""

    def respond(self, apdu: bytes) -> bytes:
        if self.removed:
            return b""
        if self.remove_after is not None and self.apdu_count >= self.remove_after:
            self.removed = True
            return b""
        self.apdu_count += 1
        return self._answer(bytes(apdu))

    def _answer(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = apdu[:4]
        if apdu == SELECT_PPSE or apdu == SELECT_PPSE[:-1]:
            return PPSE_FCI + b"\x90\x00"
        if (cla, ins) == (0xFF, 0xCA):
            return self.uid + b"\x90\x00"
        if (cla, ins, p1, p2) == (0x00, 0xCA, 0x00, 0x01):
            self._pending = bytes(range(200))
            return self._next_piece(0)
        if (cla, ins) == (0x00, 0xC0):
            if not self._pending:
                return b"\x69\x85"
            return self._next_piece(apdu[4] if len(apdu) > 4 else 0)
        if (cla, ins, p1, p2) == (0x00, 0xCA, 0x00, 0x02):
            le = apdu[4] if len(apdu) == 5 else -1
            if le != 0x20:
                return b"\x6c\x20"
            return bytes(range(0x20)) + b"\x90\x00"
        if (cla, ins, p1, p2) == (0x00, 0xCA, 0x00, 0x03):
            return bytes(i % 251 for i in range(self.long_size)) + b"\x90\x00"
        if (cla, ins) == (0x80, 0xEE):
            if len(apdu) < 5 or len(apdu) < 5 + apdu[4]:
                return b"\x67\x00"
            return apdu[5 : 5 + apdu[4]] + b"\x90\x00"
        return b"\x6d\x00"

    def _next_piece(self, le: int) -> bytes:
        size = 64 if le == 0 else le
        piece, self._pending = self._pending[:size], self._pending[size:]
        if self._pending:
            return piece + bytes([0x61, min(len(self._pending), 0xFF) & 0xFF])
        return piece + b"\x90\x00"
