"""What a card's ATR says, in words, for the technician (pure).

A contact card's ATR (ISO/IEC 7816-3) is the card's own answer to reset. A contactless card has an
ATS or ATQB instead; a PC/SC reader builds an ATR for it (PC/SC part 3, section 3.1.3.2.3):

- ``3B 8n 80 01 <historical bytes> TCK`` for an ISO/IEC 14443-4 card (the historical bytes of its
  ATS for type A, its application data for type B): a card that speaks APDUs, so it can carry a
  payment application;
- ``3B 8F 80 01 80 4F 0C A0 00 00 03 06 <SS> <NN NN> 00 00 00 00 TCK`` for a storage card (MIFARE
  Classic, Ultralight, FeliCa, ...): PC/SC's RID A000000306, the standard and the card name. A
  storage card cannot pay.

`describe_atr` parses the interface bytes (protocols offered, TCK) and names the kind of card.
"""

from __future__ import annotations

from dataclasses import dataclass

PCSC_RID = bytes.fromhex("A000000306")

# PC/SC part 3 supplement: card names (NN NN) of storage cards
_STORAGE_CARDS = {
    0x0001: "MIFARE Classic 1K", 0x0002: "MIFARE Classic 4K", 0x0003: "MIFARE Ultralight",
    0x0026: "MIFARE Mini", 0x003A: "MIFARE Ultralight C", 0x0036: "MIFARE Plus SL1 2K",
    0x0037: "MIFARE Plus SL1 4K", 0x0038: "MIFARE Plus SL2 2K", 0x0039: "MIFARE Plus SL2 4K",
    0x0030: "Topaz/Jewel", 0x003B: "FeliCa", 0xF004: "Topaz/Jewel", 0xF011: "FeliCa 212K",
    0xF012: "FeliCa 424K",
}
_STANDARDS = {0x03: "ISO/IEC 14443 A part 3", 0x07: "ISO/IEC 15693 part 3", 0x11: "FeliCa"}


@dataclass(frozen=True, slots=True)
class AtrInfo:
    """An ATR read: `kind` is contactless_iso14443_4, contactless_storage, contact or invalid."""

    hex: str
    kind: str
    meaning: str
    protocols: tuple[str, ...] = ()
    historical: str = ""
    can_pay: bool = False


def describe_atr(atr: bytes) -> AtrInfo:
    """The ATR in words (see the module docstring). Never raises: a broken ATR is `invalid`."""
    text = atr.hex().upper()
    if len(atr) < 2 or atr[0] not in (0x3B, 0x3F):
        return AtrInfo(text, "invalid", "not an ATR (it must start with 3B or 3F and have a format byte)")
    t0 = atr[1]
    count = t0 & 0x0F
    y = t0 >> 4
    i = 2
    protocols: list[str] = []
    tck_needed = False
    level = 1
    while y:
        for bit in (1, 2, 4):  # TA, TB, TC
            if y & bit:
                i += 1
        if y & 8:  # TD: next protocol and next indicator
            if i >= len(atr):
                return AtrInfo(text, "invalid", "the ATR is cut off in its interface bytes")
            td = atr[i]
            i += 1
            protocol = td & 0x0F
            name = f"T={protocol}"
            if name not in protocols:
                protocols.append(name)
            if protocol != 0:
                tck_needed = True
            y = td >> 4
            level += 1
        else:
            y = 0
        if i > len(atr):
            return AtrInfo(text, "invalid", "the ATR is cut off in its interface bytes")
    historical = atr[i:i + count]
    if len(historical) < count:
        return AtrInfo(text, "invalid", f"the ATR announces {count} historical bytes but has {len(historical)}")
    rest = atr[i + count:]
    if tck_needed:
        if len(rest) != 1:
            return AtrInfo(text, "invalid", "the ATR's check byte (TCK) is missing or followed by extra bytes",
                           tuple(protocols), historical.hex().upper())
        check = 0
        for byte in atr[1:]:
            check ^= byte
        if check:
            return AtrInfo(text, "invalid", "the ATR's check byte (TCK) is wrong: the reader or card garbles data",
                           tuple(protocols), historical.hex().upper())
    protocols = protocols or ["T=0"]
    hist = historical.hex().upper()
    if atr[1] & 0xF0 == 0x80 and atr[2:4] == b"\x80\x01":  # PC/SC part 3: a contactless card
        if historical[:3] == b"\x80\x4F\x0C" and historical[3:8] == PCSC_RID and len(historical) >= 11:
            standard = _STANDARDS.get(historical[8], f"standard {historical[8]:02X}")
            name = _STORAGE_CARDS.get(int.from_bytes(historical[9:11], "big"),
                                      f"card name {historical[9:11].hex().upper()}")
            return AtrInfo(text, "contactless_storage", f"contactless storage card: {name} ({standard}); it has "
                                                        "no payment application and cannot pay", tuple(protocols),
                           hist)
        return AtrInfo(text, "contactless_iso14443_4", "contactless ISO/IEC 14443-4 card (ATR built by the PC/SC "
                                                       f"reader from its ATS: historical bytes {hist or 'none'}); "
                                                       "it speaks APDUs and can carry a payment application",
                       tuple(protocols), hist, True)
    return AtrInfo(text, "contact", f"contact card offering {', '.join(protocols)}"
                                    + (f", historical bytes {hist}" if hist else ""), tuple(protocols), hist, True)


__all__ = ["AtrInfo", "describe_atr"]
