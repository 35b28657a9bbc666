"""What comes back from the card: the kernel's result (`CardRead`, `TraceEntry`), status words in
words (`sw_text`) and as `CardError`s, masking of card-holder data for the trace, and the decoding of
card data (PAN, expiry, CVM, AFL, the GET PROCESSING OPTIONS and GENERATE AC answers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TypedDict

from terminal.core import tlv
from terminal.core.cardmask import mask_card_numbers_in_hex
from terminal.core.tlv import Tlv
from terminal.errors import CardError, TlvError

MAX_RECORDS = 32  # an AFL naming more records than this is not a payment card


class TraceDict(TypedDict):
    command: str
    sw: str
    response: str
    ms: float


class CardReadDict(TypedDict):
    """`CardRead.to_dict()`: what may be logged or printed of a card read (no clear PAN)."""

    scheme: str
    aid: str
    label: str
    masked_pan: str
    card_token: str
    expiry: str | None  # ISO date
    pan_sequence: str | None
    cryptogram: str | None
    cid: str | None
    atc: int | None
    iad: str | None
    ctq: str | None
    aip: str | None
    cvm: str
    apdu_count: int
    generate_ac: bool


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One command and its answer, safe to log: card-holder data is masked."""

    command: str  # hex, header and (non-sensitive) data
    sw: str
    response: str  # TLV summary with sensitive values masked, or "" when none
    ms: float

    def to_dict(self) -> TraceDict:
        return {"command": self.command, "sw": self.sw, "response": self.response, "ms": round(self.ms, 3)}


@dataclass(frozen=True)
class CardRead:
    """What the kernel learned from one card. Never holds the clear PAN."""

    scheme: str
    aid: str
    label: str
    masked_pan: str
    card_token: str
    expiry: date | None
    pan_sequence: str | None
    cryptogram: str | None
    cid: str | None  # "TC" offline approved by the card, "ARQC" card asks to go online, "AAC" declined
    atc: int | None
    iad: str | None
    ctq: str | None
    aip: str | None
    cvm: str  # "cdcvm" (done on the phone), "online_pin", "signature", "no_cvm"
    apdu_count: int
    trace: tuple[TraceEntry, ...] = ()
    sealed_card: str | None = None
    generate_ac: bool = False
    kernel_ms: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)  # {"selection": "ppse" or "list"}

    @property
    def cdcvm_performed(self) -> bool:
        return self.cvm == "cdcvm"

    def to_dict(self) -> CardReadDict:
        return {
            "scheme": self.scheme, "aid": self.aid, "label": self.label, "masked_pan": self.masked_pan,
            "card_token": self.card_token, "expiry": self.expiry.isoformat() if self.expiry else None,
            "pan_sequence": self.pan_sequence, "cryptogram": self.cryptogram, "cid": self.cid, "atc": self.atc,
            "iad": self.iad, "ctq": self.ctq, "aip": self.aip, "cvm": self.cvm, "apdu_count": self.apdu_count,
            "generate_ac": self.generate_ac,
        }


# -- status words ----------------------------------------------------------------------------------

_SW_TEXT = {
    0x6283: "the application is blocked (6283)",
    0x6700: "the card rejected the command length (6700)",
    0x6981: "the command is incompatible with the file (6981)",
    0x6983: "the card's verification is blocked (6983)",
    0x6984: "the card's data was invalidated (6984)",
    0x6985: "the card refused: conditions of use not satisfied (6985)",
    0x6A81: "the card does not support this function; the application may be blocked (6A81)",
    0x6A82: "the card has no such application or file (6A82)",
    0x6A83: "a record the card announced is missing (6A83)",
    0x6A86: "the card rejected the parameters (6A86)",
    0x6D00: "the card does not know the command (6D00)",
    0x6E00: "the card does not know the command class (6E00)",
    0x6F00: "the card reported an internal error (6F00)",
}


def sw_text(sw: int) -> str:
    return _SW_TEXT.get(sw, f"the card answered status {sw:04X}")


def card_error(outcome: str, message: str) -> CardError:
    return CardError(message, outcome=outcome)


# -- masking -------------------------------------------------------------------------------------

SENSITIVE_TAGS = frozenset({0x5A, 0x57, 0x56, 0x9F6B, 0x5F20, 0x9F0B, 0x9F1F, 0x9F20, 0x5F24, 0x5F25})


def masked_summary(objects: Sequence[Tlv]) -> str:
    """Readable TLV with card-holder data masked: `6F[84=325041...,A5[...]]`."""
    parts: list[str] = []
    for node in objects:
        tag = f"{node.tag:X}"
        if node.children is not None:
            parts.append(f"{tag}[{masked_summary(node.children)}]")
        elif node.tag in SENSITIVE_TAGS:
            parts.append(f"{tag}=<{len(node.value)} bytes masked>")
        else:  # a PAN under a tag that is not known as card data is masked too
            parts.append(f"{tag}={mask_card_numbers_in_hex(node.value.hex().upper())}")
    return ",".join(parts)


# -- card data -----------------------------------------------------------------------------------


def _digits_from_bcd(value: bytes) -> str:
    return value.hex().upper()


def pan_from(data: dict[int, bytes]) -> str:
    if 0x5A in data:
        pan = _digits_from_bcd(data[0x5A]).rstrip("F")
    elif 0x57 in data:
        pan = _digits_from_bcd(data[0x57]).split("D", 1)[0]
    elif 0x9F6B in data:
        pan = _digits_from_bcd(data[0x9F6B]).split("D", 1)[0]
    else:
        raise card_error("try_another_card", "the card gave no card number; try another card")
    if not pan.isdigit() or not 8 <= len(pan) <= 19:
        raise card_error("try_another_card", "the card number on the card is unreadable; try another card")
    return pan


def _last_day(year: int, month: int) -> date:
    if month == 12:
        return date(year, 12, 31)
    return date.fromordinal(date(year, month + 1, 1).toordinal() - 1)


def expiry_from(data: dict[int, bytes]) -> date | None:
    raw = data.get(0x5F24)
    if raw is not None:
        text = raw.hex()
        if len(text) != 6 or not text.isdigit():
            raise card_error("try_another_card", "the card's expiry date is unreadable; try another card")
        year, month, day = 2000 + int(text[:2]), int(text[2:4]), int(text[4:6])
        try:
            return date(year, month, day)
        except ValueError:
            if 1 <= month <= 12:  # some cards write day 00 or 31 in short months: end of that month
                return _last_day(year, month)
            raise card_error("try_another_card",
                             "the card's expiry date is not a date; try another card") from None
    track2 = data.get(0x57)
    if track2 is not None:
        text = track2.hex().upper()
        if "D" in text:
            after = text.split("D", 1)[1]
            if len(after) >= 4 and after[:4].isdigit() and 1 <= int(after[2:4]) <= 12:
                return _last_day(2000 + int(after[:2]), int(after[2:4]))
    return None


_CID = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}


def cid_from(data: dict[int, bytes]) -> str | None:
    """The cryptogram type from 9F27 (AAC, TC, ARQC); ARQC for a cryptogram that comes without one."""
    cid_raw = data.get(0x9F27, b"")
    return _CID.get(cid_raw[0] & 0xC0) if cid_raw else ("ARQC" if 0x9F26 in data else None)


def cvm_from(data: dict[int, bytes]) -> str:
    ctq = data.get(0x9F6C)
    if ctq is not None and len(ctq) >= 2:
        if ctq[1] & 0x80:
            return "cdcvm"
        if ctq[0] & 0x80:
            return "online_pin"
        if ctq[0] & 0x40:
            return "signature"
    cvr = data.get(0x9F34)  # some kernels echo CVM results
    if cvr is not None and len(cvr) == 3 and (cvr[0] & 0x3F) == 0x01 and cvr[2] == 0x02:
        return "cdcvm"
    return "no_cvm"


def parse_afl(afl: bytes) -> list[tuple[int, int]]:
    if len(afl) % 4:
        raise card_error("try_another_card", f"the card's file locator is {len(afl)} bytes, not a multiple of 4")
    records: list[tuple[int, int]] = []
    for i in range(0, len(afl), 4):
        sfi, first, last, _oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if not 1 <= sfi <= 30 or first == 0 or last < first:
            raise card_error("try_another_card", f"the card's file locator entry {afl[i:i + 4].hex().upper()} "
                                                 "is invalid; try another card")
        records.extend((sfi, rec) for rec in range(first, last + 1))
        if len(records) > MAX_RECORDS:
            raise card_error("try_another_card", "the card announces more records than a payment card has")
    return records


def gpo_fields(body: bytes) -> dict[int, bytes]:
    obj = tlv.parse_one(body)
    if obj.tag == 0x80:  # format 1: AIP (2) + AFL
        if len(obj.value) < 2 or (len(obj.value) - 2) % 4:
            raise TlvError("GET PROCESSING OPTIONS format 1 answer has a bad length", offset=0)
        return {0x82: obj.value[:2], 0x94: obj.value[2:]}
    if obj.tag == 0x77:
        fields = tlv.flatten([obj])
        if 0x82 not in fields:
            raise TlvError("GET PROCESSING OPTIONS answer has no AIP (82)", offset=0)
        return fields
    raise TlvError(f"GET PROCESSING OPTIONS answered with tag {obj.tag:X}, not 80 or 77", offset=0)


def genac_fields(body: bytes) -> dict[int, bytes]:
    obj = tlv.parse_one(body)
    if obj.tag == 0x80:  # format 1: CID (1) ATC (2) AC (8) IAD (optional)
        if len(obj.value) < 11:
            raise TlvError("GENERATE AC format 1 answer is too short", offset=0)
        fields = {0x9F27: obj.value[:1], 0x9F36: obj.value[1:3], 0x9F26: obj.value[3:11]}
        if len(obj.value) > 11:
            fields[0x9F10] = obj.value[11:]
        return fields
    if obj.tag == 0x77:
        return tlv.flatten([obj])
    raise TlvError(f"GENERATE AC answered with tag {obj.tag:X}, not 80 or 77", offset=0)


__all__ = ["MAX_RECORDS", "SENSITIVE_TAGS", "CardRead", "CardReadDict", "TraceDict", "TraceEntry", "sw_text"]
