"""The EMV contactless kernel: from a card in the field to a `CardRead`, over any `ApduTransport`.

Flow (EMV Book B entry point, Book C-2/C-3 in the simple form a wallet terminal needs):

1. SELECT PPSE (``2PAY.SYS.DDF01``); the directory entries (61: 4F AID, 50 label, 87 priority,
   9F2A kernel id) intersected with the terminal's AIDs (exact or partial match) and sorted by
   priority. Without a PPSE (6A82 and friends) the terminal's AIDs are selected in turn.
2. SELECT AID of the best candidate; its FCI gives the PDOL (9F38).
3. GET PROCESSING OPTIONS with the PDOL filled from the terminal data (9F02 amount, 9F03, 9F1A,
   5F2A, 9A, 9C, 9F37, 9F66 TTQ with the online/CVM bits from the reader limits, 9F35, 9F40, 95 ...);
   the answer in format 1 (80: AIP + AFL) or format 2 (77). A 6985 moves on to the next candidate.
4. READ RECORD for each record the AFL names.
5. GENERATE AC with the CDOL1 filled when the card has not produced a cryptogram yet (Mastercard
   style); Visa-style cards finish after the reads. So 3+N or 4+N commands for N records.

The result carries the masked PAN and a keyed token; the clear PAN leaves this module only inside
the sealed blob made by the `seal` callback. The APDU trace keeps command headers, status words and
responses with card-holder data (PAN, tracks, name, expiry) masked.

Status words become `CardError`s with an outcome the screen can act on: ``tap_again``,
``try_another_card``, ``card_blocked``, ``app_not_supported``. Malformed answers raise `TlvError`
(also a `CardError`). Whatever the transport raises (card removed, reader gone) passes through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from terminal.core import tlv
from terminal.core.tlv import Tlv
from terminal.errors import CardError, TlvError

PPSE = b"2PAY.SYS.DDF01"
MAX_CANDIDATES = 8
MAX_RECORDS = 32  # an AFL naming more records than this is not a payment card
MAX_RESPONSE_CHAIN = 8  # 61xx GET RESPONSE rounds


class ApduTransport(Protocol):
    """What the kernel needs from a card: send one command APDU, get data + SW1 SW2 back. Every
    `drivers.base.CardSession` is one; so is a virtual card's session in tests."""

    def transmit(self, apdu: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class SupportedAid:
    """An application the terminal accepts. `partial`: the card's AID may extend this one (ASI)."""

    aid: bytes
    scheme: str
    label: str = ""
    partial: bool = True


def _aid(hex_aid: str, scheme: str, label: str) -> SupportedAid:
    return SupportedAid(bytes.fromhex(hex_aid), scheme, label)


DEFAULT_AIDS: tuple[SupportedAid, ...] = (
    _aid("A0000000031010", "visa", "Visa credit/debit"),
    _aid("A0000000032010", "visa", "Visa Electron"),
    _aid("A0000000032020", "visa", "V PAY"),
    _aid("A0000000041010", "mastercard", "Mastercard credit/debit"),
    _aid("A0000000043060", "mastercard", "Maestro"),
    _aid("A000000333010101", "unionpay", "UnionPay debit"),
    _aid("A000000333010102", "unionpay", "UnionPay credit"),
    _aid("A000000333010103", "unionpay", "UnionPay quasi-credit"),
    _aid("A00000002501", "amex", "American Express"),
    _aid("A0000000651010", "jcb", "JCB"),
    _aid("A0000001523010", "discover", "Discover"),
    _aid("A0000001524010", "discover", "Discover Common Debit"),
    _aid("A0000002771010", "interac", "Interac"),
)


# -- terminal data -------------------------------------------------------------------------------

# TTQ (9F66) bits, EMV Book C-3 / Book A table 5-4
TTQ_QVSDC = 0x20  # byte 1 b6: EMV mode (qVSDC) supported
TTQ_OFFLINE_ONLY = 0x08  # byte 1 b4: offline-only reader
TTQ_ONLINE_PIN = 0x04  # byte 1 b3: online PIN supported
TTQ_SIGNATURE = 0x02  # byte 1 b2: signature supported
TTQ_ONLINE_CRYPTOGRAM = 0x80  # byte 2 b8: online cryptogram required
TTQ_CVM_REQUIRED = 0x40  # byte 2 b7: CVM required
TTQ_CDCVM = 0x40  # byte 3 b7: consumer device CVM supported


def terminal_ttq(*, online_required: bool, cvm_required: bool, online_capable: bool = True,
                 online_pin: bool = True, signature: bool = False) -> bytes:
    b1 = TTQ_QVSDC | (TTQ_ONLINE_PIN if online_pin else 0) | (TTQ_SIGNATURE if signature else 0)
    if not online_capable:
        b1 |= TTQ_OFFLINE_ONLY
    b2 = (TTQ_ONLINE_CRYPTOGRAM if online_required else 0) | (TTQ_CVM_REQUIRED if cvm_required else 0)
    return bytes([b1, b2, TTQ_CDCVM, 0x00])


def _bcd(number: int, nbytes: int) -> bytes:
    digits = str(number).rjust(nbytes * 2, "0")
    if len(digits) > nbytes * 2:
        raise ValueError(f"{number} does not fit {nbytes} BCD bytes")
    return bytes.fromhex(digits)


@dataclass(frozen=True)
class TerminalParams:
    """Everything the terminal tells the card about this transaction. Amounts in minor units."""

    amount: int
    currency_numeric: int
    country_numeric: int
    when: datetime
    unpredictable_number: bytes
    amount_other: int = 0
    transaction_type: int = 0x00  # 00 purchase, 20 refund
    floor_limit: int = 0
    cvm_required_limit: int = 0
    online_capable: bool = True
    terminal_type: int = 0x22  # attended, offline with online capability
    terminal_capabilities: bytes = bytes.fromhex("E0F0C8")
    additional_capabilities: bytes = bytes.fromhex("F000F0A001")
    merchant_name: str = ""
    aids: tuple[SupportedAid, ...] = DEFAULT_AIDS

    @property
    def online_required(self) -> bool:
        return self.amount > self.floor_limit  # EMV: above the floor limit (strictly)

    @property
    def cvm_required(self) -> bool:
        return self.amount >= self.cvm_required_limit  # EMV: at or above the CVM required limit

    def data(self) -> dict[int, bytes]:
        """Terminal-side data objects by tag, for PDOL and CDOL."""
        if len(self.unpredictable_number) != 4:
            raise ValueError("the unpredictable number is 4 bytes")
        ttq = terminal_ttq(online_required=self.online_required, cvm_required=self.cvm_required,
                           online_capable=self.online_capable)
        return {
            0x9F02: _bcd(self.amount, 6),
            0x9F03: _bcd(self.amount_other, 6),
            0x9F1A: _bcd(self.country_numeric, 2),
            0x5F2A: _bcd(self.currency_numeric, 2),
            0x9A: bytes.fromhex(self.when.strftime("%y%m%d")),
            0x9F21: bytes.fromhex(self.when.strftime("%H%M%S")),
            0x9C: bytes([self.transaction_type]),
            0x9F37: self.unpredictable_number,
            0x9F66: ttq,
            0x95: bytes(5),  # TVR: nothing found wrong by the terminal
            0x9F35: bytes([self.terminal_type]),
            0x9F33: self.terminal_capabilities,
            0x9F40: self.additional_capabilities,
            0x9F34: bytes.fromhex("3F0000"),  # CVM results: no CVM performed (yet)
            0x9F4E: self.merchant_name.encode("ascii", "replace")[:20],
            0x9F1E: b"WALLETPS",  # interface device serial number
            0x5F36: bytes([0x02]),
        }


# DOL value formats (EMV Book 3 5.4): numeric ones pad and truncate on the left
_NUMERIC_TAGS = frozenset({0x9F02, 0x9F03, 0x9F1A, 0x5F2A, 0x9A, 0x9F21, 0x9C, 0x9F35, 0x5F36, 0x9F41})


def build_dol(dol: Sequence[tuple[int, int]], data: dict[int, bytes]) -> bytes:
    """The concatenated values a DOL asks for; unknown tags are zeros (EMV Book 3 5.4)."""
    out = bytearray()
    for tag, length in dol:
        value = data.get(tag)
        if value is None or tlv.tag_is_constructed(tag):
            out += bytes(length)
        elif len(value) == length:
            out += value
        elif tag in _NUMERIC_TAGS:
            out += value[-length:] if len(value) > length else bytes(length - len(value)) + value
        else:
            out += value[:length] if len(value) > length else value + bytes(length - len(value))
    return bytes(out)


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One command and its answer, safe to log: card-holder data is masked."""

    command: str  # hex, header and (non-sensitive) data
    sw: str
    response: str  # TLV summary with sensitive values masked, or "" when none
    ms: float

    def to_dict(self) -> dict[str, Any]:
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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cdcvm_performed(self) -> bool:
        return self.cvm == "cdcvm"

    def to_dict(self) -> dict[str, Any]:
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


def _fail(outcome: str, message: str) -> CardError:
    return CardError(message, outcome=outcome)


# -- masking -------------------------------------------------------------------------------------

SENSITIVE_TAGS = frozenset({0x5A, 0x57, 0x56, 0x9F6B, 0x5F20, 0x9F0B, 0x9F1F, 0x9F20, 0x5F24, 0x5F25})


def _summary(objects: Sequence[Tlv]) -> str:
    """Readable TLV with card-holder data masked: `6F[84=325041...,A5[...]]`."""
    parts: list[str] = []
    for node in objects:
        tag = f"{node.tag:X}"
        if node.children is not None:
            parts.append(f"{tag}[{_summary(node.children)}]")
        elif node.tag in SENSITIVE_TAGS:
            parts.append(f"{tag}=<{len(node.value)} bytes masked>")
        else:
            parts.append(f"{tag}={node.value.hex().upper()}")
    return ",".join(parts)


# -- the kernel ----------------------------------------------------------------------------------


class _Card:
    """The transport plus the trace, the APDU count and the 61xx/6Cxx handling."""

    def __init__(self, transport: ApduTransport, clock: Callable[[], float]) -> None:
        self.transport = transport
        self.clock = clock
        self.count = 0
        self.trace: list[TraceEntry] = []

    def send(self, apdu: bytes, *, shown: str | None = None) -> tuple[bytes, int]:
        t0 = self.clock()
        command = apdu
        head = b""
        response = self._exchange(command)
        rounds = 0
        while len(response) >= 2 and response[-2] in (0x61, 0x6C) and rounds < MAX_RESPONSE_CHAIN:
            rounds += 1
            if response[-2] == 0x6C:  # wrong Le: send the same command again with the length the card asks for
                command = command[:-1] + response[-1:] if len(command) > 4 else command + response[-1:]
            else:  # 61xx: more data waiting; keep what came and fetch the rest with GET RESPONSE
                head += response[:-2]
                command = bytes([0x00, 0xC0, 0x00, 0x00, response[-1]])
            response = self._exchange(command)
        if len(response) < 2:
            raise _fail("tap_again", f"the card answered {len(response)} bytes where a status word was "
                                     "expected; tap again")
        sw = int.from_bytes(response[-2:], "big")
        self.trace.append(TraceEntry(shown if shown is not None else apdu.hex().upper(), f"{sw:04X}", "",
                                     (self.clock() - t0) * 1000))
        return head + response[:-2], sw

    def _exchange(self, apdu: bytes) -> bytes:
        self.count += 1
        response = self.transport.transmit(apdu)
        if not isinstance(response, bytes | bytearray):
            raise _fail("tap_again", "the reader returned no data for the command; tap again")
        return bytes(response)

    def note_response(self, objects: Sequence[Tlv]) -> None:
        last = self.trace[-1]
        self.trace[-1] = TraceEntry(last.command, last.sw, _summary(objects), last.ms)


def _select(aid: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid + b"\x00"


@dataclass(frozen=True, slots=True)
class Candidate:
    aid: bytes
    scheme: str
    label: str
    priority: int  # 1 highest .. 15; 16 for "no priority"
    order: int


def _match(card_aid: bytes, aids: Sequence[SupportedAid]) -> SupportedAid | None:
    for supported in aids:
        if card_aid == supported.aid or (supported.partial and card_aid.startswith(supported.aid)):
            return supported
    return None


def candidates_from_ppse(fci: Sequence[Tlv], aids: Sequence[SupportedAid]) -> list[Candidate]:
    """The directory entries the terminal supports, best priority first (EMV Book B 3.3)."""
    out: list[Candidate] = []
    template = tlv.find(fci, 0xBF0C)
    entries = [node for node in (template.children or ()) if node.tag == 0x61] if template else []
    for order, entry in enumerate(entries):
        fields = tlv.flatten([entry])
        card_aid = fields.get(0x4F)
        if not card_aid or not 5 <= len(card_aid) <= 16:
            continue
        supported = _match(card_aid, aids)
        if supported is None:
            continue
        prio_raw = fields.get(0x87, b"")
        priority = (prio_raw[0] & 0x0F) if len(prio_raw) == 1 else 0
        label = fields.get(0x50, b"").decode("ascii", "replace") or supported.label
        out.append(Candidate(card_aid, supported.scheme, label, priority or 16, order))
    out.sort(key=lambda c: (c.priority, c.order))
    return out[:MAX_CANDIDATES]


def _digits_from_bcd(value: bytes) -> str:
    return value.hex().upper()


def _pan_from(data: dict[int, bytes]) -> str:
    if 0x5A in data:
        pan = _digits_from_bcd(data[0x5A]).rstrip("F")
    elif 0x57 in data:
        pan = _digits_from_bcd(data[0x57]).split("D", 1)[0]
    elif 0x9F6B in data:
        pan = _digits_from_bcd(data[0x9F6B]).split("D", 1)[0]
    else:
        raise _fail("try_another_card", "the card gave no card number; try another card")
    if not pan.isdigit() or not 8 <= len(pan) <= 19:
        raise _fail("try_another_card", "the card number on the card is unreadable; try another card")
    return pan


def _last_day(year: int, month: int) -> date:
    if month == 12:
        return date(year, 12, 31)
    return date.fromordinal(date(year, month + 1, 1).toordinal() - 1)


def _expiry_from(data: dict[int, bytes]) -> date | None:
    raw = data.get(0x5F24)
    if raw is not None:
        text = raw.hex()
        if len(text) != 6 or not text.isdigit():
            raise _fail("try_another_card", "the card's expiry date is unreadable; try another card")
        year, month, day = 2000 + int(text[:2]), int(text[2:4]), int(text[4:6])
        try:
            return date(year, month, day)
        except ValueError:
            if 1 <= month <= 12:  # some cards write day 00 or 31 in short months: end of that month
                return _last_day(year, month)
            raise _fail("try_another_card", "the card's expiry date is not a date; try another card") from None
    track2 = data.get(0x57)
    if track2 is not None:
        text = track2.hex().upper()
        if "D" in text:
            after = text.split("D", 1)[1]
            if len(after) >= 4 and after[:4].isdigit() and 1 <= int(after[2:4]) <= 12:
                return _last_day(2000 + int(after[:2]), int(after[2:4]))
    return None


_CID = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}


def _cvm_from(data: dict[int, bytes]) -> str:
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


def _parse_afl(afl: bytes) -> list[tuple[int, int]]:
    if len(afl) % 4:
        raise _fail("try_another_card", f"the card's file locator is {len(afl)} bytes, not a multiple of 4")
    records: list[tuple[int, int]] = []
    for i in range(0, len(afl), 4):
        sfi, first, last, _oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if not 1 <= sfi <= 30 or first == 0 or last < first:
            raise _fail("try_another_card", f"the card's file locator entry {afl[i:i + 4].hex().upper()} "
                                            "is invalid; try another card")
        records.extend((sfi, rec) for rec in range(first, last + 1))
        if len(records) > MAX_RECORDS:
            raise _fail("try_another_card", "the card announces more records than a payment card has")
    return records


def _gpo_fields(body: bytes) -> dict[int, bytes]:
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


def _genac_fields(body: bytes) -> dict[int, bytes]:
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


def _select_application(card: _Card, params: TerminalParams) -> tuple[list[Candidate], str]:
    """The candidate list: from the PPSE, or the terminal's own AIDs when the card has none."""
    body, sw = card.send(_select(PPSE))
    if sw == 0x9000:
        fci = tlv.parse(body)
        card.note_response(fci)
        found = candidates_from_ppse(fci, params.aids)
        if found:
            return found, "ppse"
        if tlv.find(fci, 0x61) is not None:
            raise _fail("app_not_supported", "the card has no payment application this terminal accepts; "
                                             "try another card")
    elif sw in (0x6985, 0x6984):
        raise _fail("try_another_card", f"{sw_text(sw)}; try another card")
    # no PPSE (or an empty one): try the terminal's AIDs in turn (EMV Book B 3.3.2 fallback)
    return [Candidate(a.aid, a.scheme, a.label, 16, i) for i, a in enumerate(params.aids)], "list"


def read_card(transport: ApduTransport, params: TerminalParams, *, tokenize: Callable[[str], str],
              mask: Callable[[str], str], seal: Callable[[bytes], str] | None = None,
              clock: Callable[[], float] = time.perf_counter) -> CardRead:
    """Run the kernel against the card behind `transport`. Raises CardError (incl. TlvError) for
    anything the card does wrong; transport errors (card removed, reader gone) pass through."""
    t0 = clock()
    card = _Card(transport, clock)
    try:
        return _read(card, params, tokenize, mask, seal, t0)
    except (ValueError, IndexError, UnicodeError, OverflowError) as exc:  # defence in depth: typed, never raw
        raise _fail("try_another_card", f"the card answered something the terminal cannot read ({exc}); "
                                        "try another card") from exc


def _read(card: _Card, params: TerminalParams, tokenize: Callable[[str], str], mask: Callable[[str], str],
          seal: Callable[[bytes], str] | None, t0: float) -> CardRead:
    terminal_data = params.data()
    candidates, via = _select_application(card, params)
    blocked = False
    refused: str | None = None
    for cand in candidates:
        body, sw = card.send(_select(cand.aid))
        if sw in (0x6A81, 0x6283):
            blocked = True
            continue
        if sw in (0x6985, 0x6984):
            refused = sw_text(sw)
            continue
        if sw != 0x9000:
            continue
        fci = tlv.parse(body)
        card.note_response(fci)
        fci_fields = tlv.flatten(fci)
        selected_aid = fci_fields.get(0x84, cand.aid)
        pdol = tlv.parse_dol(fci_fields.get(0x9F38, b""))
        pdol_data = build_dol(pdol, terminal_data)
        command_data = tlv.encode(0x83, pdol_data)
        if len(command_data) > 255:
            raise _fail("try_another_card", "the card asks for more processing data than one command holds")
        gpo_cmd = bytes([0x80, 0xA8, 0x00, 0x00, len(command_data)]) + command_data + b"\x00"
        body, sw = card.send(gpo_cmd, shown=f"80A80000 83<{len(pdol_data)} bytes terminal data>")
        if sw in (0x6985, 0x6984):  # EMV Book B: this application declines; try the next candidate
            refused = sw_text(sw)
            continue
        if sw != 0x9000:
            raise _fail("try_another_card", f"{sw_text(sw)} to GET PROCESSING OPTIONS; try another card")
        gpo = _gpo_fields(body)
        card.note_response(tlv.parse(body))
        return _finish(card, params, terminal_data, cand, selected_aid, fci_fields, gpo, via, tokenize, mask,
                       seal, t0)
    if refused:
        raise _fail("try_another_card", f"{refused}; the card cannot pay contactlessly here — try another card")
    if blocked:
        raise _fail("card_blocked", "the card's payment application is blocked; use another card")
    raise _fail("app_not_supported", "the card has no payment application this terminal accepts; "
                                     "try another card")


def _finish(card: _Card, params: TerminalParams, terminal_data: dict[int, bytes], cand: Candidate,
            selected_aid: bytes, fci_fields: dict[int, bytes], gpo: dict[int, bytes], via: str,
            tokenize: Callable[[str], str], mask: Callable[[str], str], seal: Callable[[bytes], str] | None,
            t0: float) -> CardRead:
    data: dict[int, bytes] = dict(gpo)
    for sfi, rec in _parse_afl(gpo.get(0x94, b"")):
        body, sw = card.send(bytes([0x00, 0xB2, rec, (sfi << 3) | 0x04, 0x00]))
        if sw != 0x9000:
            raise _fail("try_another_card", f"{sw_text(sw)} reading record {rec} of file {sfi}; try another card")
        objects = tlv.parse(body)
        if len(objects) != 1 or objects[0].tag not in (0x70, 0x77):
            raise TlvError(f"record {rec} of file {sfi} is not a record template (70)", offset=0)
        card.note_response(objects)
        for tag, value in tlv.flatten(objects).items():
            data.setdefault(tag, value)

    generate_ac = False
    if 0x9F26 not in data:
        cdol1 = data.get(0x8C)
        if cdol1 is None:
            raise _fail("try_another_card", "the card gave no application cryptogram and no CDOL1; "
                                            "try another card")
        cdol_data = build_dol(tlv.parse_dol(cdol1), {**terminal_data, **{t: v for t, v in data.items()
                                                                         if t not in terminal_data}})
        if len(cdol_data) > 255:
            raise _fail("try_another_card", "the card asks for more risk data than one command holds")
        p1 = 0x80 if params.online_required and params.online_capable else 0x40
        body, sw = card.send(bytes([0x80, 0xAE, p1, 0x00, len(cdol_data)]) + cdol_data + b"\x00",
                             shown=f"80AE{p1:02X}00 <{len(cdol_data)} bytes risk data>")
        if sw != 0x9000:
            raise _fail("try_another_card", f"{sw_text(sw)} to GENERATE AC; try another card")
        fields = _genac_fields(body)
        if 0x9F26 not in fields:
            raise TlvError("GENERATE AC answer carries no application cryptogram (9F26)", offset=0)
        card.note_response(tlv.parse(body))
        data.update(fields)
        generate_ac = True

    pan = _pan_from(data)
    expiry = _expiry_from(data)
    psn_raw = data.get(0x5F34)
    cid_raw = data.get(0x9F27, b"")
    cid = _CID.get(cid_raw[0] & 0xC0) if cid_raw else ("ARQC" if 0x9F26 in data else None)
    atc_raw = data.get(0x9F36)
    sealed = None
    if seal is not None:
        secret = {"pan": pan, "expiry": expiry.isoformat() if expiry else None,
                  "pan_sequence": psn_raw.hex() if psn_raw else None,
                  "track2": data[0x57].hex().upper() if 0x57 in data else None,
                  "aid": selected_aid.hex().upper(), "cryptogram": data.get(0x9F26, b"").hex().upper(),
                  "atc": atc_raw.hex().upper() if atc_raw else None,
                  "iad": data.get(0x9F10, b"").hex().upper(), "unpredictable_number":
                      terminal_data[0x9F37].hex().upper(), "amount": params.amount,
                  "currency": params.currency_numeric}
        sealed = seal(json.dumps(secret, separators=(",", ":")).encode())
    label = fci_fields.get(0x50, b"").decode("ascii", "replace") or cand.label
    return CardRead(
        scheme=cand.scheme,
        aid=selected_aid.hex().upper(),
        label=label,
        masked_pan=mask(pan),
        card_token=tokenize(pan),
        expiry=expiry,
        pan_sequence=psn_raw.hex() if psn_raw else None,
        cryptogram=data[0x9F26].hex().upper() if 0x9F26 in data else None,
        cid=cid,
        atc=int.from_bytes(atc_raw, "big") if atc_raw else None,
        iad=data[0x9F10].hex().upper() if 0x9F10 in data else None,
        ctq=data[0x9F6C].hex().upper() if 0x9F6C in data else None,
        aip=data[0x82].hex().upper() if 0x82 in data else None,
        cvm=_cvm_from(data),
        apdu_count=card.count,
        trace=tuple(card.trace),
        sealed_card=sealed,
        generate_ac=generate_ac,
        kernel_ms=(card.clock() - t0) * 1000,
        extra={"selection": via},
    )
