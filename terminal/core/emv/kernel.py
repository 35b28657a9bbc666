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
from dataclasses import dataclass
from typing import Protocol

from terminal.core import tlv
from terminal.core.emv.card_data import (
    CardRead,
    TraceEntry,
    card_error,
    cid_from,
    cvm_from,
    expiry_from,
    genac_fields,
    gpo_fields,
    masked_summary,
    pan_from,
    parse_afl,
    sw_text,
)
from terminal.core.emv.terminal_data import SupportedAid, TerminalParams, build_dol
from terminal.core.tlv import Tlv
from terminal.errors import TlvError

PPSE = b"2PAY.SYS.DDF01"
MAX_CANDIDATES = 8
MAX_RESPONSE_CHAIN = 8  # 61xx GET RESPONSE rounds


class ApduTransport(Protocol):
    """What the kernel needs from a card: send one command APDU, get data + SW1 SW2 back. Every
    `drivers.base.CardSession` is one; so is a virtual card's session in tests."""

    def transmit(self, apdu: bytes) -> bytes: ...


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
            raise card_error("tap_again", f"the card answered {len(response)} bytes where a status word was "
                                          "expected; tap again")
        sw = int.from_bytes(response[-2:], "big")
        self.trace.append(TraceEntry(shown if shown is not None else apdu.hex().upper(), f"{sw:04X}", "",
                                     (self.clock() - t0) * 1000))
        return head + response[:-2], sw

    def _exchange(self, apdu: bytes) -> bytes:
        self.count += 1
        response = self.transport.transmit(apdu)
        if not isinstance(response, bytes | bytearray):
            raise card_error("tap_again", "the reader returned no data for the command; tap again")
        return bytes(response)

    def note_response(self, objects: Sequence[Tlv]) -> None:
        last = self.trace[-1]
        self.trace[-1] = TraceEntry(last.command, last.sw, masked_summary(objects), last.ms)


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
            raise card_error("app_not_supported", "the card has no payment application this terminal accepts; "
                                                  "try another card")
    elif sw in (0x6985, 0x6984):
        raise card_error("try_another_card", f"{sw_text(sw)}; try another card")
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
        raise card_error("try_another_card", f"the card answered something the terminal cannot read ({exc}); "
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
            raise card_error("try_another_card", "the card asks for more processing data than one command holds")
        gpo_cmd = bytes([0x80, 0xA8, 0x00, 0x00, len(command_data)]) + command_data + b"\x00"
        body, sw = card.send(gpo_cmd, shown=f"80A80000 83<{len(pdol_data)} bytes terminal data>")
        if sw in (0x6985, 0x6984):  # EMV Book B: this application declines; try the next candidate
            refused = sw_text(sw)
            continue
        if sw != 0x9000:
            raise card_error("try_another_card", f"{sw_text(sw)} to GET PROCESSING OPTIONS; try another card")
        gpo = gpo_fields(body)
        card.note_response(tlv.parse(body))
        return _finish(card, params, terminal_data, cand, selected_aid, fci_fields, gpo, via, tokenize, mask,
                       seal, t0)
    if refused:
        raise card_error("try_another_card", f"{refused}; the card cannot pay contactlessly here — try another card")
    if blocked:
        raise card_error("card_blocked", "the card's payment application is blocked; use another card")
    raise card_error("app_not_supported", "the card has no payment application this terminal accepts; "
                                          "try another card")


def _finish(card: _Card, params: TerminalParams, terminal_data: dict[int, bytes], cand: Candidate,
            selected_aid: bytes, fci_fields: dict[int, bytes], gpo: dict[int, bytes], via: str,
            tokenize: Callable[[str], str], mask: Callable[[str], str], seal: Callable[[bytes], str] | None,
            t0: float) -> CardRead:
    data: dict[int, bytes] = dict(gpo)
    for sfi, rec in parse_afl(gpo.get(0x94, b"")):
        body, sw = card.send(bytes([0x00, 0xB2, rec, (sfi << 3) | 0x04, 0x00]))
        if sw != 0x9000:
            raise card_error("try_another_card", f"{sw_text(sw)} reading record {rec} of file {sfi}; try another card")
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
            raise card_error("try_another_card", "the card gave no application cryptogram and no CDOL1; "
                                                 "try another card")
        cdol_data = build_dol(tlv.parse_dol(cdol1), {**terminal_data, **{t: v for t, v in data.items()
                                                                         if t not in terminal_data}})
        if len(cdol_data) > 255:
            raise card_error("try_another_card", "the card asks for more risk data than one command holds")
        p1 = 0x80 if params.online_required and params.online_capable else 0x40
        body, sw = card.send(bytes([0x80, 0xAE, p1, 0x00, len(cdol_data)]) + cdol_data + b"\x00",
                             shown=f"80AE{p1:02X}00 <{len(cdol_data)} bytes risk data>")
        if sw != 0x9000:
            raise card_error("try_another_card", f"{sw_text(sw)} to GENERATE AC; try another card")
        fields = genac_fields(body)
        if 0x9F26 not in fields:
            raise TlvError("GENERATE AC answer carries no application cryptogram (9F26)", offset=0)
        card.note_response(tlv.parse(body))
        data.update(fields)
        generate_ac = True

    pan = pan_from(data)
    expiry = expiry_from(data)
    psn_raw = data.get(0x5F34)
    cid = cid_from(data)
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
        cvm=cvm_from(data),
        apdu_count=card.count,
        trace=tuple(card.trace),
        sealed_card=sealed,
        generate_ac=generate_ac,
        kernel_ms=(card.clock() - t0) * 1000,
        extra={"selection": via},
    )

__all__ = ["MAX_CANDIDATES", "MAX_RESPONSE_CHAIN", "PPSE", "ApduTransport", "Candidate", "candidates_from_ppse",
           "read_card"]
