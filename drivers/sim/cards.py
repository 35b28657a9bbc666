"""Virtual contactless cards: in-process EMV cards that answer command APDUs the way real cards do.

`make_card("visa")` builds a `VirtualCard` from a profile (`drivers.sim.profiles`). The same card object
is served by the in-process `SimReader`, over pcscd + vpcd and over nfcpy's udp driver; all of them call
`respond(apdu) -> data + SW1 SW2`.

What a card answers (EMV Book 1 and 3, contactless kernels C-2 and C-3 in outline):

- SELECT 2PAY.SYS.DDF01 → PPSE FCI listing the applications (4F, 50, 87); 6A82 without a PPSE.
- SELECT AID (full or partial name; P2 02 = next occurrence) → the application's FCI (84, A5: 50, 87,
  9F38 PDOL, 5F2D); 6A81 for a blocked application; 6A82 for an unknown one.
- GET PROCESSING OPTIONS → 6985 before a SELECT AID; 6700 unless the data is 83 with exactly the PDOL's
  length; qVSDC answers format 2 (77 with the cryptogram), M/Chip format 1 (80: AIP + AFL). Each GPO
  increments the application transaction counter (it survives `reset`, like a real card's).
- READ RECORD → 6985 before GPO, 6A83 for a record outside the AFL.
- GENERATE AC (M/Chip) → 6700 unless Lc is the CDOL1 (then CDOL2) length; 77 with 9F27, 9F36, 9F26, 9F10.
- GET DATA 9F36 (ATC) and 9F17 (PIN try counter); other tags 6A88.
- Unknown instruction 6D00, wrong class 6E00, wrong P1/P2 6A86, inconsistent lengths 6700.

The answers are encoded once when the card is built; `respond` only looks them up and writes the
counter and the cryptogram into a copy (a few microseconds per command). Cryptograms are keyed hashes
of the GPO / GENERATE AC data: stable for the same input, different for each unpredictable number. They
are not real EMV cryptograms.

A card never raises from `respond`. Once it has left the field (`remove_after`), it answers b"".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from drivers.sim.profiles import PROFILES, AppProfile, CardProfile, Dol

PPSE_NAME = b"2PAY.SYS.DDF01"

SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_CONDITIONS_NOT_SATISFIED = b"\x69\x85"
SW_FUNCTION_NOT_SUPPORTED = b"\x6a\x81"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_RECORD_NOT_FOUND = b"\x6a\x83"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_DATA_NOT_FOUND = b"\x6a\x88"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"
SW_NO_DIAGNOSIS = b"\x6f\x00"

CID_AAC = 0x00
CID_TC = 0x40
CID_ARQC = 0x80

_CID_RANK = {CID_AAC: 0, CID_ARQC: 1, CID_TC: 2}

# four bytes that are no BER-TLV (DE = tag, AD = a long length form with 45 length bytes)
GARBAGE_BYTES = bytes.fromhex("DEADBEEF")


# -- encoding (the card's own, deliberately independent of the terminal's parser) ---------------------


def _tag_bytes(tag: int) -> bytes:
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def _length_bytes(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    if length < 0x100:
        return bytes([0x81, length])
    return bytes([0x82]) + length.to_bytes(2, "big")


def tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV data object (the value is used as given: encode children first)."""
    return _tag_bytes(tag) + _length_bytes(len(value)) + value


def encode_dol(dol: Dol) -> bytes:
    """A PDOL / CDOL as the card sends it: tag and length of each entry."""
    return b"".join(_tag_bytes(tag) + bytes([length]) for tag, length in dol)


def dol_length(dol: Dol) -> int:
    """How many bytes the terminal sends for `dol`."""
    return sum(length for _, length in dol)


def bcd(digits: str) -> bytes:
    """Digits packed two to a byte, an odd count padded with F (PAN in 5A, track 2 in 57)."""
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


def track2(pan: str, expiry: str, service_code: str) -> bytes:
    """Track 2 equivalent data (57): PAN, separator D, YYMM, service code, discretionary data."""
    return bcd(f"{pan}D{expiry[:4]}{service_code}0000000000000")


def contactless_atr(historical: bytes) -> bytes:
    """The ATR a PC/SC reader builds for an ISO 14443-4 card: 3B 8n 80 01 <historical bytes> TCK."""
    if len(historical) > 15:
        raise ValueError("an ATR holds at most 15 historical bytes")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for byte in body:
        tck ^= byte
    return b"\x3b" + body + bytes([tck])


def luhn_valid(pan: str) -> bool:
    """The Luhn (mod 10) check every PAN passes."""
    if not pan.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(pan)):
        digit = int(ch)
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _template(outer: int, items: list[tuple[int, bytes]]) -> tuple[bytes, dict[int, int]]:
    """A constructed object and, for each tag inside, the offset of its value in the encoding."""
    body = bytearray()
    where: dict[int, int] = {}
    for tag, value in items:
        head = _tag_bytes(tag) + _length_bytes(len(value))
        where[tag] = len(body) + len(head)
        body += head + value
    header = _tag_bytes(outer) + _length_bytes(len(body))
    return header + bytes(body), {tag: offset + len(header) for tag, offset in where.items()}


def command_data(apdu: bytes) -> bytes | None:
    """The command data field (ISO 7816-4 cases 1-4, short or extended), None when Lc is inconsistent."""
    n = len(apdu)
    if n <= 5:
        return b""  # case 1 (header only) or case 2 (header + Le)
    lc = apdu[4]
    if lc:
        end = 5 + lc
        return apdu[5:end] if n in (end, end + 1) else None
    # extended length: 00 Lc1 Lc2 data [Le1 Le2], or 00 Le1 Le2 (case 2E)
    if n == 7:
        return b""
    lc = int.from_bytes(apdu[5:7], "big")
    end = 7 + lc
    return apdu[7:end] if lc and n in (end, end + 2) else None


# -- one application, encoded -------------------------------------------------------------------------


@dataclass
class _App:
    index: int
    aid: bytes
    profile: AppProfile
    select_response: bytes
    pdol_length: int
    gpo_response: bytes  # a template for qvsdc (ATC and AC written into a copy), fixed for mchip
    gpo_atc_at: int
    gpo_ac_at: int
    records: dict[tuple[int, int], bytes]
    genac_template: bytes
    genac_cid_at: int
    genac_atc_at: int
    genac_ac_at: int
    cdol1_length: int
    cdol2_length: int | None


def _build_app(index: int, app: AppProfile, card: CardProfile) -> _App:
    aid = bytes.fromhex(app.aid)
    pan = app.pan or card.pan
    fci_items = [tlv(0x50, app.label.encode("ascii"))]
    if app.priority is not None:
        fci_items.append(tlv(0x87, bytes([app.priority])))
    if app.pdol:
        fci_items.append(tlv(0x9F38, encode_dol(app.pdol)))
    fci_items.append(tlv(0x5F2D, app.language.encode("ascii")))
    select_response = tlv(0x6F, tlv(0x84, aid) + tlv(0xA5, b"".join(fci_items))) + SW_OK
    if card.garbage:
        select_response = GARBAGE_BYTES + SW_OK

    name = card.cardholder_name.encode("ascii")
    track = track2(pan, card.expiry, card.service_code)
    psn = bcd(f"{card.pan_sequence:02d}")
    expiry = bytes.fromhex(card.expiry)
    country = bytes.fromhex(card.issuer_country)
    records: dict[tuple[int, int], bytes] = {}
    gpo_atc_at = gpo_ac_at = 0
    genac_template = b""
    genac_cid_at = genac_atc_at = genac_ac_at = 0

    if app.kernel == "qvsdc":
        afl = bytes([1 << 3, 1, 1, 0])  # SFI 1, record 1 to 1, no record for offline data authentication
        gpo, where = _template(0x77, [
            (0x82, bytes.fromhex(app.aip)),
            (0x94, afl),
            (0x57, track),
            (0x5F34, psn),
            (0x9F10, bytes.fromhex(app.iad)),
            (0x9F26, bytes(8)),
            (0x9F27, bytes([app.cid])),
            (0x9F36, bytes(2)),
            (0x9F6C, bytes.fromhex(app.ctq)),
        ])
        gpo_response = gpo + SW_OK
        gpo_atc_at, gpo_ac_at = where[0x9F36], where[0x9F26]
        record = tlv(0x5A, bcd(pan)) + tlv(0x5F24, expiry) + tlv(0x5F28, country)
        if app.name_tag is not None:
            record += tlv(app.name_tag, name)
        records[(1, 1)] = tlv(0x70, record) + SW_OK
    else:
        afl = bytes([1 << 3, 1, 2, 0])  # SFI 1, records 1 to 2
        gpo_response = tlv(0x80, bytes.fromhex(app.aip) + afl) + SW_OK
        first = tlv(0x57, track)
        if app.name_tag is not None:
            first += tlv(app.name_tag, name)
        second = (tlv(0x5A, bcd(pan)) + tlv(0x5F24, expiry) + tlv(0x5F25, bytes.fromhex(card.effective))
                  + tlv(0x5F28, country) + tlv(0x5F34, psn) + tlv(0x8C, encode_dol(app.cdol1)))
        if app.cdol2:
            second += tlv(0x8D, encode_dol(app.cdol2))
        second += tlv(0x8E, bytes(8) + bytes.fromhex("42031E031F03"))  # CVM list: PIN online, sig., no CVM
        records[(1, 1)] = tlv(0x70, first) + SW_OK
        records[(1, 2)] = tlv(0x70, second) + SW_OK
        genac, where = _template(0x77, [
            (0x9F27, bytes(1)),
            (0x9F36, bytes(2)),
            (0x9F26, bytes(8)),
            (0x9F10, bytes.fromhex(app.iad)),
        ])
        genac_template = genac + SW_OK
        genac_cid_at, genac_atc_at, genac_ac_at = where[0x9F27], where[0x9F36], where[0x9F26]

    return _App(index=index, aid=aid, profile=app, select_response=select_response,
                pdol_length=dol_length(app.pdol), gpo_response=gpo_response, gpo_atc_at=gpo_atc_at,
                gpo_ac_at=gpo_ac_at, records=records, genac_template=genac_template, genac_cid_at=genac_cid_at,
                genac_atc_at=genac_atc_at, genac_ac_at=genac_ac_at, cdol1_length=dol_length(app.cdol1),
                cdol2_length=dol_length(app.cdol2) if app.cdol2 else None)


def _ppse_response(card: CardProfile, apps: list[_App]) -> bytes:
    if not card.ppse:
        return SW_FILE_NOT_FOUND
    if card.garbage:
        # 6F says 64 bytes, far fewer follow: a length past the end
        return b"\x6f\x40\x84\x0e" + PPSE_NAME + b"\xa5\x04\xbf\x0c\x02\x61" + SW_OK
    entries = []
    for app in apps:
        if not app.profile.in_ppse:
            continue
        entry = tlv(0x4F, app.aid) + tlv(0x50, app.profile.label.encode("ascii"))
        if app.profile.priority is not None:
            entry += tlv(0x87, bytes([app.profile.priority]))
        entries.append(tlv(0x61, entry))
    return tlv(0x6F, tlv(0x84, PPSE_NAME) + tlv(0xA5, tlv(0xBF0C, b"".join(entries)))) + SW_OK


def _check_profile(profile: CardProfile) -> None:
    pans = [profile.pan] + [app.pan for app in profile.apps if app.pan]
    for pan in pans:
        if not (12 <= len(pan) <= 19 and pan.isdigit()):
            raise ValueError(f"card profile {profile.name!r}: a PAN is 12 to 19 digits")
    for date in (profile.expiry, profile.effective):
        if len(date) != 6 or not date.isdigit():
            raise ValueError(f"card profile {profile.name!r}: dates are YYMMDD, got {date!r}")
    if not profile.apps:
        raise ValueError(f"card profile {profile.name!r} has no application")
    if profile.uid and len(bytes.fromhex(profile.uid)) not in (4, 7, 10):
        raise ValueError(f"card profile {profile.name!r}: a UID is 4, 7 or 10 bytes")


# -- the card ------------------------------------------------------------------------------------------


class VirtualCard:
    """One contactless card in the field, built from a `CardProfile`.

    `reset()` is a power-on (a new tap): selection and transaction state go back to the start, the
    command count to zero and a card that had left the field is back. The transaction counter stays.
    """

    def __init__(self, profile: CardProfile) -> None:
        _check_profile(profile)
        self.profile = profile
        self.name = profile.name
        self.pan = profile.pan
        self.atr = contactless_atr(bytes.fromhex(profile.historical_bytes))
        self.uid = (bytes.fromhex(profile.uid) if profile.uid
                    else b"\x04" + hashlib.sha256(b"walletpos-sim-uid:" + profile.name.encode()).digest()[:6])
        self.atc = profile.atc
        self.apdu_count = 0
        self.removed = False
        self._key = hashlib.sha256(b"walletpos-sim-card-key:" + profile.name.encode()).digest()[:16]
        self._apps = [_build_app(i, app, profile) for i, app in enumerate(profile.apps)]
        self._by_aid = {app.aid: app for app in self._apps}
        self._ppse = _ppse_response(profile, self._apps)
        self._handlers: dict[int, tuple[int, Callable[[int, int, bytes], bytes]]] = {
            0xA4: (0x00, self._select),
            0xA8: (0x80, self._get_processing_options),
            0xB2: (0x00, self._read_record),
            0xAE: (0x80, self._generate_ac),
            0xCA: (0x80, self._get_data),
        }
        self.reset()

    def __repr__(self) -> str:  # no PAN: cards end up in logs and assertion messages
        return f"VirtualCard({self.name!r}, atc={self.atc}, apdu_count={self.apdu_count}, removed={self.removed})"

    def reset(self) -> None:
        self.apdu_count = 0
        self.removed = False
        self._selected: _App | None = None
        self._last_selected = -1
        self._gpo_done = False
        self._genac_count = 0
        self._second_genac_allowed = False

    def respond(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response data + SW1 SW2; b"" once the card has left the field."""
        if self.removed:
            return b""
        try:
            answer = self._answer(bytes(apdu))
        except (IndexError, ValueError, TypeError):  # a bug here must not crash a reader thread
            answer = SW_NO_DIAGNOSIS
        self.apdu_count += 1
        remove_after = self.profile.remove_after
        if remove_after is not None and self.apdu_count >= remove_after:
            self.removed = True
        return answer

    # -- commands ------------------------------------------------------------------------------------

    def _answer(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        handler = self._handlers.get(apdu[1])
        if handler is None:
            return SW_INS_NOT_SUPPORTED
        cla, method = handler
        if apdu[0] != cla:
            return SW_CLA_NOT_SUPPORTED
        data = command_data(apdu)
        if data is None:
            return SW_WRONG_LENGTH
        return method(apdu[2], apdu[3], data)

    def _select(self, p1: int, p2: int, name: bytes) -> bytes:
        if p1 != 0x04 or p2 not in (0x00, 0x02):
            return SW_WRONG_P1P2
        if not name:
            return SW_WRONG_LENGTH
        self._selected = None
        self._gpo_done = False
        self._genac_count = 0
        if name == PPSE_NAME:
            self._last_selected = -1
            return self._ppse if p2 == 0x00 else SW_FILE_NOT_FOUND
        app = self._by_aid.get(name) if p2 == 0x00 else None
        if app is None:  # partial name (EMV Book 1, 12.3.3): the first / next application it starts
            start = self._last_selected + 1 if p2 == 0x02 else 0
            app = next((a for a in self._apps[start:] if len(name) >= 5 and a.aid.startswith(name)), None)
            if app is None:
                return SW_FILE_NOT_FOUND
        self._last_selected = app.index
        if app.profile.select_sw != 0x9000:
            return app.profile.select_sw.to_bytes(2, "big")
        self._selected = app
        return app.select_response

    def _get_processing_options(self, p1: int, p2: int, data: bytes) -> bytes:
        if p1 or p2:
            return SW_WRONG_P1P2
        app = self._selected
        if app is None:
            return SW_CONDITIONS_NOT_SATISFIED
        if app.profile.gpo_sw != 0x9000:
            return app.profile.gpo_sw.to_bytes(2, "big")
        if len(data) < 2 or data[0] != 0x83 or data[1] != len(data) - 2 or data[1] != app.pdol_length:
            return SW_WRONG_LENGTH
        self.atc = (self.atc + 1) & 0xFFFF
        self._gpo_done = True
        self._genac_count = 0
        self._second_genac_allowed = False
        if app.profile.kernel != "qvsdc":
            return app.gpo_response
        atc = self.atc.to_bytes(2, "big")
        answer = bytearray(app.gpo_response)
        answer[app.gpo_atc_at:app.gpo_atc_at + 2] = atc
        answer[app.gpo_ac_at:app.gpo_ac_at + 8] = self._cryptogram(atc, app.profile.cid, data)
        return bytes(answer)

    def _read_record(self, p1: int, p2: int, data: bytes) -> bytes:
        if p1 == 0 or p2 & 0x07 != 0x04 or p2 >> 3 == 0:
            return SW_WRONG_P1P2
        if self._selected is None or not self._gpo_done:
            return SW_CONDITIONS_NOT_SATISFIED
        return self._selected.records.get((p2 >> 3, p1), SW_RECORD_NOT_FOUND)

    def _generate_ac(self, p1: int, p2: int, data: bytes) -> bytes:
        app = self._selected
        if app is None or not self._gpo_done or app.profile.kernel != "mchip":
            return SW_CONDITIONS_NOT_SATISFIED
        requested = p1 & 0xC0
        if p2 != 0x00 or requested == 0xC0:
            return SW_WRONG_P1P2
        if self._genac_count == 0:
            if len(data) != app.cdol1_length:
                return SW_WRONG_LENGTH
            # the card may only lower what was asked (TC > ARQC > AAC), down to its own choice
            cid = min(requested, app.profile.cid, key=_CID_RANK.__getitem__)
            self._second_genac_allowed = cid == CID_ARQC and app.cdol2_length is not None
        elif self._genac_count == 1 and self._second_genac_allowed:
            if len(data) != app.cdol2_length:
                return SW_WRONG_LENGTH
            if requested == CID_ARQC:
                return SW_CONDITIONS_NOT_SATISFIED
            cid = requested
            self._second_genac_allowed = False
        else:
            return SW_CONDITIONS_NOT_SATISFIED
        self._genac_count += 1
        atc = self.atc.to_bytes(2, "big")
        answer = bytearray(app.genac_template)
        answer[app.genac_cid_at] = cid
        answer[app.genac_atc_at:app.genac_atc_at + 2] = atc
        answer[app.genac_ac_at:app.genac_ac_at + 8] = self._cryptogram(atc, cid, data)
        return bytes(answer)

    def _get_data(self, p1: int, p2: int, data: bytes) -> bytes:
        tag = p1 << 8 | p2
        if tag == 0x9F36:
            return tlv(0x9F36, self.atc.to_bytes(2, "big")) + SW_OK
        if tag == 0x9F17:
            return tlv(0x9F17, bytes([self.profile.pin_try_counter])) + SW_OK
        return SW_DATA_NOT_FOUND

    def _cryptogram(self, atc: bytes, cid: int, data: bytes) -> bytes:
        return hashlib.blake2b(atc + bytes([cid]) + data, key=self._key, digest_size=8).digest()


def make_card(profile: str | CardProfile, **overrides: object) -> VirtualCard:
    """A fresh card from a profile name in `PROFILES` (or a `CardProfile`).

    `overrides` replace profile fields: card fields (`pan`, `expiry`, `remove_after`, `atc`, ...) on the
    card, application fields (`cid`, `select_sw`, `gpo_sw`, `aip`, ...) on every application of it.
    """
    if isinstance(profile, str):
        try:
            base = PROFILES[profile]
        except KeyError:
            raise ValueError(f"no card profile {profile!r}; known: {', '.join(sorted(PROFILES))}") from None
    else:
        base = profile
    card_fields = {f.name for f in fields(CardProfile)}
    app_fields = {f.name for f in fields(AppProfile)}
    unknown = set(overrides) - card_fields - app_fields
    if unknown:
        raise TypeError(f"make_card() got unknown profile fields: {', '.join(sorted(unknown))}")
    card_changes: dict[str, Any] = {k: v for k, v in overrides.items() if k in card_fields}
    app_changes: dict[str, Any] = {k: v for k, v in overrides.items() if k in app_fields and k not in card_fields}
    if app_changes:
        card_changes["apps"] = tuple(replace(app, **app_changes) for app in base.apps)
    return VirtualCard(replace(base, **card_changes) if card_changes else base)
