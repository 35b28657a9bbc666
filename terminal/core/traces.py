"""Recorded card exchanges (pure): the redacted trace a terminal keeps of a failed tap, its replay,
and the decoded, masked view a technician reads.

**Saved traces** have the format of the shared vectors' transcripts (an `emv_apdu_sequence` item:
`kind`, `label`, `data` = list of `{command, response}` in upper-case hex, `expected`, `source`,
`brand`, `notes`), so the same replay serves both. A saved trace never holds a card number in
clear. Before it is written (`trace_item`):

- the PAN (tag 5A) keeps its first six and last four digits; the other digits become ``*``;
- track 2 equivalent data (57, 9F6B) keeps the masked PAN, the expiry and the service code; its
  discretionary data becomes ``*``;
- track 1 (56, 9F1F), track 2 discretionary data (9F20) and the card-holder name (5F20, 9F0B)
  become ``*`` entirely;
- every other value the kernel does not need to match (all but AIDs, labels, priorities, DOLs, the
  AFL and the AIP) passes through `mask_card_numbers_in_hex`, so a card number under an unknown tag
  is masked too; the data the terminal sends with GET PROCESSING OPTIONS and GENERATE AC as well.

``*`` is not a hex digit: a saved trace marks plainly what was taken out. The expiry dates (5F24,
5F25) stay, so a card refused as expired replays as expired.

**Replay** (`replayable`): the masked PAN (`expected.masked_pan`) is replaced everywhere by a test
PAN with the same first six and last four digits, zeros in between except one digit chosen so that
the number passes the Luhn check (`substitute_pan`); every other ``*`` becomes ``0``. The kernel then
reads the recorded card as the terminal did, with a card number that is not the customer's: same
scheme, same issuer range, same masked PAN on the screen, another card token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from terminal.core import tlv
from terminal.core.cardmask import luhn_valid, mask_card_numbers, mask_card_numbers_in_hex, mask_digits
from terminal.errors import TlvError

TRACE_KIND = "emv_apdu_sequence"
TRACE_FORMAT = "walletpos-failed-tap-1"

PAN_TAG = 0x5A
TRACK2_TAGS = frozenset({0x57, 0x9F6B})
HIDDEN_TAGS = frozenset({0x56, 0x9F1F, 0x9F20, 0x5F20, 0x9F0B})
# what the kernel matches or decodes to choose and run the application: kept as the card sent it
KERNEL_TAGS = frozenset({0x4F, 0x84, 0x9F06, 0x50, 0x87, 0x9F38, 0x94, 0x82, 0x8C, 0x8D, 0x9F2A, 0x9F27,
                         0x9F6C, 0x5F24, 0x5F25, 0x5F28, 0x9F07, 0x9F08, 0x9F42, 0x5F34})
# instructions whose command data may carry data the card gave (a CDOL may ask for any tag)
_CARD_DATA_INS = frozenset({0xAE, 0x2A, 0x88})

TAG_NAMES: Mapping[int, str] = {
    0x4F: "AID", 0x50: "application label", 0x56: "track 1 data", 0x57: "track 2 equivalent data",
    0x5A: "PAN", 0x61: "directory entry", 0x6F: "FCI template", 0x70: "record template",
    0x77: "response template (format 2)", 0x80: "response (format 1)", 0x82: "AIP", 0x84: "DF name",
    0x87: "priority", 0x88: "SFI", 0x8C: "CDOL1", 0x8D: "CDOL2", 0x8E: "CVM list",
    0x8F: "CA public key index", 0x90: "issuer public key certificate", 0x92: "issuer public key remainder",
    0x94: "AFL", 0x9F02: "amount", 0x9F03: "amount, other", 0x9F06: "AID (terminal)",
    0x9F07: "application usage control", 0x9F08: "application version", 0x9F0B: "card-holder name extended",
    0x9F10: "issuer application data", 0x9F11: "issuer code table index", 0x9F12: "application preferred name",
    0x9F1A: "terminal country", 0x9F1F: "track 1 discretionary data", 0x9F20: "track 2 discretionary data",
    0x9F26: "application cryptogram", 0x9F27: "cryptogram information data", 0x9F2A: "kernel identifier",
    0x9F32: "issuer public key exponent", 0x9F36: "ATC", 0x9F38: "PDOL", 0x9F42: "application currency",
    0x9F46: "ICC public key certificate", 0x9F47: "ICC public key exponent", 0x9F4A: "SDA tag list",
    0x9F4B: "signed dynamic application data", 0x9F4D: "log entry", 0x9F5D: "available offline spending",
    0x9F66: "TTQ", 0x9F69: "card authentication related data", 0x9F6B: "track 2 data (magstripe mode)",
    0x9F6C: "CTQ", 0x9F6E: "form factor indicator", 0x5F20: "card-holder name", 0x5F24: "expiry date",
    0x5F25: "effective date", 0x5F28: "issuer country", 0x5F2D: "language preference",
    0x5F34: "PAN sequence number", 0xA5: "FCI proprietary template", 0xBF0C: "FCI issuer discretionary data",
    0x9F4C: "ICC dynamic number", 0x9F7C: "customer exclusive data",
}
_TEXT_TAGS = frozenset({0x50, 0x84, 0x9F12, 0x5F2D})


def _value_start(data: bytes, node: tlv.Tlv) -> int:
    """Where `node`'s value starts in `data` (after its tag and its length, whatever form the card used)."""
    at = node.offset + len(tlv.tag_bytes(node.tag))
    first = data[at]
    return at + 1 + (first & 0x7F if first & 0x80 else 0)


def _masked_pan_hex(value_hex: str) -> tuple[str, str | None]:
    """A PAN value (BCD, maybe F-padded): (its hex with the middle digits as '*', the masked PAN)."""
    digits = value_hex.rstrip("F")
    if not digits.isdigit() or not 8 <= len(digits) <= 19:
        return "*" * len(value_hex), None
    masked = mask_digits(digits)
    return masked + value_hex[len(digits):], masked


def _masked_track2_hex(value_hex: str) -> tuple[str, str | None]:
    pan, sep, rest = value_hex.partition("D")
    masked_pan_hex, masked = _masked_pan_hex(pan)
    if not sep:
        return masked_pan_hex, masked
    kept = rest[:7]  # YYMM expiry + service code
    tail = rest[7:]
    padding = len(tail) - len(tail.rstrip("F"))
    return masked_pan_hex + sep + kept + "*" * (len(tail) - padding) + "F" * padding, masked


def redact_value(tag: int, value: bytes) -> tuple[str, str | None]:
    """One primitive value as a saved trace keeps it (module docstring), and the masked PAN it holds."""
    text = value.hex().upper()
    if tag == PAN_TAG:
        return _masked_pan_hex(text)
    if tag in TRACK2_TAGS:
        return _masked_track2_hex(text)
    if tag in HIDDEN_TAGS:
        return "*" * len(text), None
    if tag in KERNEL_TAGS:
        return text, None
    return mask_card_numbers_in_hex(text), None


def redact_response(response: bytes) -> tuple[str, str | None]:
    """A card's answer (data + SW1 SW2) as a saved trace keeps it, and the masked PAN found in it."""
    if len(response) < 2:
        return mask_card_numbers_in_hex(response.hex().upper()), None
    data, sw = response[:-2], response[-2:].hex().upper()
    try:
        objects = tlv.parse(data)
    except TlvError:
        return mask_card_numbers_in_hex(data.hex().upper()) + sw, None
    chars = list(data.hex().upper())
    masked_pan: str | None = None
    for top in objects:
        for node in top.walk():
            if node.children is not None:
                continue
            redacted, pan = redact_value(node.tag, node.value)
            start = _value_start(data, node) * 2
            chars[start:start + len(redacted)] = list(redacted)
            if pan and (masked_pan is None or node.tag == PAN_TAG):
                masked_pan = pan
    return "".join(chars) + sw, masked_pan


def redact_command(apdu: bytes) -> str:
    """A command as a saved trace keeps it: data filled from a CDOL (GENERATE AC), which may hold
    what the card gave, passes the card-number mask; SELECT, GET PROCESSING OPTIONS (the PDOL is filled
    from the terminal's data only) and READ RECORD stay as sent."""
    text = apdu.hex().upper()
    if len(apdu) > 5 and apdu[1] in _CARD_DATA_INS:
        return text[:10] + mask_card_numbers_in_hex(text[10:])
    return text


@dataclass(frozen=True, slots=True)
class Exchange:
    """One command and the card's answer as the reader carried them (in memory only: the answer
    may hold the card number). `response` None: the card left the field (or the reader failed)."""

    command: bytes
    response: bytes | None
    ms: float


def trace_item(exchanges: Sequence[Exchange], *, label: str, source: str, outcome: str, message: str,
               brand: str = "", extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A failed tap as a saved trace (the shared vectors' item format, redacted: module docstring)."""
    data: list[dict[str, Any]] = []
    masked_pan: str | None = None
    for exchange in exchanges:
        response = None
        if exchange.response is not None:
            response, pan = redact_response(exchange.response)
            masked_pan = masked_pan or pan
        data.append({"command": redact_command(exchange.command), "response": response,
                     "ms": round(exchange.ms, 3)})
    removed = bool(exchanges) and exchanges[-1].response is None
    return {
        "kind": TRACE_KIND,
        "format": TRACE_FORMAT,
        "label": label,
        "data": data,
        "expected": {"outcome": outcome, "masked_pan": masked_pan, "card_left_field": removed},
        "source": source,
        "brand": brand,
        "notes": f"saved by the terminal after a failed tap: {message}. Card numbers are masked ('*'); a "
                 "replay substitutes a Luhn-valid test PAN with the same first six and last four digits.",
        **(dict(extra) if extra else {}),
    }


def substitute_pan(masked: str) -> str:
    """A Luhn-valid number in place of a masked PAN: its shown digits kept, the hidden ones zero but
    the last hidden digit, chosen so that the Luhn check passes."""
    if not masked or not all(ch.isdigit() or ch == "*" for ch in masked) or "*" not in masked:
        raise ValueError(f"{masked!r} is not a masked card number")
    hidden = [i for i, ch in enumerate(masked) if ch == "*"]
    digits = [ch if ch != "*" else "0" for ch in masked]
    last = hidden[-1]
    for candidate in "0123456789":
        digits[last] = candidate
        if luhn_valid("".join(digits)):
            return "".join(digits)
    raise AssertionError("one digit always makes a number Luhn-valid")  # pragma: no cover


def replayable(item: Mapping[str, Any]) -> dict[str, Any]:
    """A saved trace with hex a replay can send: the masked PAN replaced by `substitute_pan`, every other
    '*' by '0' (module docstring). Items without '*' (the shared vectors) come back unchanged."""
    expected = item.get("expected") or {}
    masked = expected.get("masked_pan") if isinstance(expected, Mapping) else None
    substitute = substitute_pan(masked) if isinstance(masked, str) and "*" in masked else None

    def clean(text: Any) -> Any:
        if not isinstance(text, str) or "*" not in text:
            return text
        if substitute is not None and masked is not None:
            text = text.replace(masked, substitute)
        return text.replace("*", "0")

    out = dict(item)
    out["data"] = [{**step, "command": clean(step.get("command")), "response": clean(step.get("response"))}
                   for step in item.get("data", [])]
    return out


def check_trace_item(item: Any) -> dict[str, Any]:
    """A trace file's item, checked enough to replay (raises ValueError saying what is wrong)."""
    if not isinstance(item, dict) or item.get("kind") != TRACE_KIND:
        raise ValueError(f"not a recorded card exchange (an item of kind {TRACE_KIND!r})")
    steps = item.get("data")
    if not isinstance(steps, list) or not steps:
        raise ValueError("the trace has no exchanges")
    hexish = re.compile(r"[0-9A-Fa-f*]*")
    for n, step in enumerate(steps, 1):
        if not isinstance(step, dict):
            raise ValueError(f"exchange {n} is not an object")
        for key in ("command", "response"):
            value = step.get(key)
            if value is not None and (not isinstance(value, str) or not hexish.fullmatch(value) or len(value) % 2):
                raise ValueError(f"exchange {n}: {key} is not hex")
    return item


# -- reading an exchange: command names and the decoded, masked TLV tree --------------------------


def command_name(apdu: bytes) -> str:
    """What a command is, in words (`SELECT 2PAY.SYS.DDF01`, `READ RECORD 1 of SFI 2`, ...)."""
    if len(apdu) < 4:
        return "short command"
    cla, ins, p1, p2 = apdu[:4]
    if ins == 0xA4:
        data = apdu[5:5 + apdu[4]] if len(apdu) > 5 else b""
        name = data.decode("ascii") if data and all(0x20 <= b < 0x7F for b in data) else data.hex().upper()
        return f"SELECT {name}".rstrip()
    if ins == 0xA8:
        return "GET PROCESSING OPTIONS"
    if ins == 0xB2:
        return f"READ RECORD {p1} of SFI {p2 >> 3}"
    if ins == 0xAE:
        kind = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}.get(p1 & 0xC0, f"{p1:02X}")
        return f"GENERATE AC ({kind})"
    if ins == 0xC0:
        return "GET RESPONSE"
    if ins == 0xCA:
        return f"GET DATA {p1:02X}{p2:02X}"
    return f"{cla:02X} {ins:02X} {p1:02X} {p2:02X}"


def shown_value(tag: int, value: bytes) -> str:
    """A primitive value as a screen may show it: card-holder data masked as the kernel masks it
    (the PAN and track 2 with first six and last four digits, names and expiry hidden)."""
    if tag == PAN_TAG:
        return _masked_pan_hex(value.hex().upper())[0]
    if tag in TRACK2_TAGS:
        pan, _, _ = value.hex().upper().partition("D")
        return _masked_pan_hex(pan)[0] + "D…"
    if tag in HIDDEN_TAGS or tag in (0x5F24, 0x5F25):
        return f"<{len(value)} bytes masked>"
    if tag in _TEXT_TAGS and value and all(0x20 <= b < 0x7F for b in value):
        return '"' + mask_card_numbers(value.decode("ascii")) + '"'
    return mask_card_numbers_in_hex(value.hex().upper())


def tlv_tree(data: bytes, *, indent: str = "  ") -> list[str]:
    """The answer's data objects, one per line, nested by indentation, values masked (`shown_value`).
    Data that is not TLV is shown masked as one line."""
    try:
        objects = tlv.parse(data)
    except TlvError as exc:
        return [f"not TLV ({exc.message}): {mask_card_numbers_in_hex(data.hex().upper())}"]
    lines: list[str] = []

    def add(nodes: Iterable[tlv.Tlv], depth: int) -> None:
        for node in nodes:
            name = TAG_NAMES.get(node.tag, "")
            head = f"{indent * depth}{node.tag:X}" + (f" {name}" if name else "")
            if node.children is not None:
                lines.append(head)
                add(node.children, depth + 1)
            else:
                lines.append(f"{head}: {shown_value(node.tag, node.value)}")

    add(objects, 0)
    return lines


__all__ = [
    "TAG_NAMES", "TRACE_FORMAT", "TRACE_KIND", "Exchange", "check_trace_item", "command_name", "redact_command",
    "redact_response", "redact_value", "replayable", "shown_value", "substitute_pan", "tlv_tree", "trace_item",
]
