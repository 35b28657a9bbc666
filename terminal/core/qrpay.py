"""Payment codes read by the camera or shown on the screen: parse into typed values, or refuse with a
`QrPayloadError` whose `reason` says what is wrong. Pure: text in, values out (the caller passes
`now`, the issuer keys and the configured numeric prefixes).

Four families, told apart by how they start (`classify`):

- EMVCo merchant-presented (MPM, "000201..."): TLV text, each data object an ID of two digits, a
  length of two digits and the value. Lengths count characters (EMVCo MPM 4.x); a code whose
  lengths only add up when counted in UTF-8 bytes (one VietQR source does this) is read that way as a
  fallback and remembers it, so it round-trips. The CRC (ID 63, CRC-16/CCITT-FALSE over the UTF-8
  bytes of everything before its value, including "6304") must be the last object and must verify:
  a code without a CRC or with a wrong one is refused, because the CRC is the only integrity check a
  camera read has. Hex digits of the CRC are compared without regard to case.
- EMVCo consumer-presented (CPM, base64 of BER-TLV starting with 85 05 "CPV01"): one or more
  application templates (61) and an optional common data template (62).
- Signed wallet codes ("WP1:" + base45): verified offline against an issuer Ed25519 key; see
  docs/wallet-code.md for the byte layout.
- Numeric wallet codes (18-19 digits with a configured prefix): only the backend can resolve them.

Anything else (a web address, plain text, another scheme) is `OtherCode`: not a payment code.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Literal

import base45
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from terminal.core import tlv
from terminal.core.money import Currency, Money, currency
from terminal.core.rules import WalletTier
from terminal.errors import MoneyError, QrPayloadError, TlvError

# The longest text any payment code of these families can have (an EMVCo MPM is at most 512
# characters; a CPM with two applications about 400). Longer text is refused before parsing.
MAX_CODE_LENGTH = 1024


class CodeKind(StrEnum):
    MPM = "mpm"
    CPM = "cpm"
    WALLET_SIGNED = "wallet_signed"
    WALLET_NUMERIC = "wallet_numeric"
    OTHER = "other"


class Why(StrEnum):
    """Machine-readable reasons of `QrPayloadError` raised by this module."""

    EMPTY = "empty_code"
    TOO_LONG = "too_long"
    CONTROL_CHARACTER = "control_character"
    NOT_A_PAYMENT_CODE = "not_a_payment_code"
    # TLV text (MPM)
    INVALID_TAG = "invalid_tag"
    INVALID_LENGTH = "invalid_length"
    TRUNCATED = "truncated"
    DUPLICATE_TAG = "duplicate_tag"
    MISSING_CRC = "missing_crc"
    CRC_NOT_LAST = "crc_not_last"
    CRC_MISMATCH = "crc_mismatch"
    UNSUPPORTED_PAYLOAD_FORMAT = "unsupported_payload_format"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    # CPM
    MALFORMED_BASE64 = "malformed_base64"
    MALFORMED_TLV = "malformed_tlv"
    NOT_CPV01 = "not_cpv01"
    NO_APPLICATION = "no_application"
    # wallet codes
    MALFORMED_WALLET_CODE = "malformed_wallet_code"
    UNSUPPORTED_VERSION = "unsupported_code_version"
    UNKNOWN_KEY = "unknown_issuer_key"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "code_expired"
    NOT_YET_VALID = "code_not_yet_valid"
    CAP_EXCEEDED = "code_cap_exceeded"
    CAP_CURRENCY = "code_cap_currency_mismatch"
    UNKNOWN_NUMERIC_PREFIX = "unknown_numeric_prefix"


def _refuse(reason: Why, message: str) -> QrPayloadError:
    return QrPayloadError(message, reason=reason.value)


def check_text(text: object) -> str:
    """The checks every scanned text gets before any parser sees it."""
    if not isinstance(text, str):
        raise _refuse(Why.NOT_A_PAYMENT_CODE, f"a code must be text, got {type(text).__name__}")
    if not text:
        raise _refuse(Why.EMPTY, "the code is empty")
    if len(text) > MAX_CODE_LENGTH:
        raise _refuse(Why.TOO_LONG, f"the code is {len(text)} characters long; no payment code has more than "
                                    f"{MAX_CODE_LENGTH}")
    for i, ch in enumerate(text):
        if ch < " " or ch == "\x7f":
            name = "a NUL character" if ch == "\x00" else f"control character U+{ord(ch):04X}"
            raise _refuse(Why.CONTROL_CHARACTER, f"the code contains {name} at position {i}; "
                                                 "no payment code does")
    return text


# ================================================================================================
# EMVCo merchant-presented mode (MPM)


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor): check 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)


def mpm_crc(text_before_crc_value: str) -> str:
    """The four upper-case hex digits of an MPM CRC over everything up to and including "6304"."""
    return f"{crc16_ccitt_false(text_before_crc_value.encode('utf-8')):04X}"


LengthUnit = Literal["chars", "utf8_bytes"]

# IDs whose values are templates (nested ID-length-value). 26-51 (merchant accounts) and 80-99
# (unreserved) are templates by the spec, but real codes put plain values there (DuitNow tag 82),
# so those are read as templates only when they parse as one; 62 and 64 must parse.
_STRICT_TEMPLATES = frozenset({"62", "64"})


def _lenient_template(tag: str) -> bool:
    n = int(tag)
    return 26 <= n <= 51 or 80 <= n <= 99


def _vlen(value: str, unit: LengthUnit) -> int:
    return len(value) if unit == "chars" else len(value.encode("utf-8"))


def _split_tlv(text: str, unit: LengthUnit, where: str) -> list[tuple[str, str]]:
    """Split ID-length-value text into (id, value) pairs, in order; refuse anything malformed."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    i = 0
    raw = text.encode("utf-8") if unit == "utf8_bytes" else None
    n = len(raw) if raw is not None else len(text)
    while i < n:
        head = (raw[i:i + 4].decode("utf-8", "replace") if raw is not None else text[i:i + 4])
        if len(head) < 4 or (raw is not None and i + 4 > n):
            raise _refuse(Why.TRUNCATED, f"{where}: the code ends inside a data object header at position {i}")
        tag, length = head[:2], head[2:]
        if not (tag.isascii() and tag.isdigit()):
            raise _refuse(Why.INVALID_TAG, f"{where}: {tag!r} at position {i} is not a two-digit ID")
        if not (length.isascii() and length.isdigit()):
            raise _refuse(Why.INVALID_LENGTH, f"{where}: ID {tag} has length {length!r}, not two digits")
        size = int(length)
        start, end = i + 4, i + 4 + size
        if end > n:
            raise _refuse(Why.TRUNCATED, f"{where}: ID {tag} says {size} but only {n - start} remain")
        if raw is not None:
            try:
                value = raw[start:end].decode("utf-8")
            except UnicodeDecodeError:
                raise _refuse(Why.INVALID_LENGTH, f"{where}: ID {tag} length {size} splits a character") from None
        else:
            value = text[start:end]
        if tag in seen:
            raise _refuse(Why.DUPLICATE_TAG, f"{where}: ID {tag} appears twice")
        seen.add(tag)
        out.append((tag, value))
        i = end
    return out


def _join_tlv(pairs: Iterable[tuple[str, str]], unit: LengthUnit = "chars") -> str:
    parts = []
    for tag, value in pairs:
        size = _vlen(value, unit)
        if not (len(tag) == 2 and tag.isdigit()):
            raise _refuse(Why.INVALID_TAG, f"cannot write ID {tag!r}: IDs are two digits")
        if size > 99:
            raise _refuse(Why.INVALID_LENGTH, f"cannot write ID {tag}: value of {size} exceeds 99")
        parts.append(f"{tag}{size:02d}{value}")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class MpmField:
    """One top-level data object; `template` holds its sub-objects when its value is a template."""

    tag: str
    value: str
    template: tuple[tuple[str, str], ...] | None = None

    def sub(self, tag: str) -> str | None:
        for t, v in self.template or ():
            if t == tag:
                return v
        return None


_AMOUNT = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)")


@dataclass(frozen=True, slots=True)
class MerchantPresentedCode:
    """A verified EMVCo MPM payload. `fields` keeps every data object in its order for round trips."""

    fields: tuple[MpmField, ...]
    length_unit: LengthUnit = "chars"
    kind: CodeKind = field(default=CodeKind.MPM, init=False)

    def get(self, tag: str) -> MpmField | None:
        for f in self.fields:
            if f.tag == tag:
                return f
        return None

    def value(self, tag: str) -> str | None:
        f = self.get(tag)
        return f.value if f else None

    @property
    def payload_format(self) -> str:
        return self.value("00") or ""

    @property
    def initiation(self) -> Literal["static", "dynamic"] | None:
        return {"11": "static", "12": "dynamic"}.get(self.value("01") or "")  # type: ignore[return-value]

    @property
    def merchant_accounts(self) -> tuple[MpmField, ...]:
        return tuple(f for f in self.fields if 2 <= int(f.tag) <= 51)

    @property
    def mcc(self) -> str | None:
        return self.value("52")

    @property
    def currency_numeric(self) -> str | None:
        return self.value("53")

    @property
    def amount_text(self) -> str | None:
        return self.value("54")

    @property
    def country(self) -> str | None:
        return self.value("58")

    @property
    def merchant_name(self) -> str | None:
        return self.value("59")

    @property
    def merchant_city(self) -> str | None:
        return self.value("60")

    @property
    def postal_code(self) -> str | None:
        return self.value("61")

    @property
    def additional_data(self) -> dict[str, str]:
        f = self.get("62")
        return dict(f.template or ()) if f else {}

    @property
    def reference(self) -> str | None:
        """62/05 reference label (the transaction a dynamic code belongs to)."""
        return self.additional_data.get("05")

    @property
    def alternate_language(self) -> dict[str, str]:
        f = self.get("64")
        return dict(f.template or ()) if f else {}

    @property
    def crc(self) -> str:
        return self.value("63") or ""

    def amount(self) -> Money | None:
        """Field 54 as Money in the currency of field 53, or None when either is absent or unknown."""
        if self.amount_text is None or self.currency_numeric is None:
            return None
        try:
            cur = currency(self.currency_numeric)
        except MoneyError:
            return None
        whole, _, frac = self.amount_text.partition(".")
        if len(frac) > cur.exponent:
            return None
        minor = int(whole or "0") * 10**cur.exponent + (int(frac.ljust(cur.exponent, "0")) if cur.exponent else 0)
        try:
            return Money(minor, cur)
        except MoneyError:
            return None

    def to_text(self) -> str:
        """The payload exactly as read (same order, same length unit, same CRC text)."""
        return _join_tlv(((f.tag, f.value) for f in self.fields), self.length_unit)

    def summary(self) -> dict[str, object]:
        return {
            "payload_format": self.payload_format, "initiation": self.initiation, "mcc": self.mcc,
            "currency": self.currency_numeric, "amount": self.amount_text, "country": self.country,
            "merchant_name": self.merchant_name, "merchant_city": self.merchant_city,
            "reference": self.reference, "merchant_account_ids": [f.tag for f in self.merchant_accounts],
        }


def _parse_fields(text: str, unit: LengthUnit) -> tuple[MpmField, ...]:
    fields_: list[MpmField] = []
    for tag, value in _split_tlv(text, unit, "MPM"):
        template = None
        if tag in _STRICT_TEMPLATES:
            template = tuple(_split_tlv(value, unit, f"MPM ID {tag}"))
        elif _lenient_template(tag):
            try:
                template = tuple(_split_tlv(value, unit, f"MPM ID {tag}"))
            except QrPayloadError:
                template = None  # a plain value where the spec allows a template: kept as it is
        fields_.append(MpmField(tag, value, template))
    return tuple(fields_)


def _check_crc(text: str, fields_: Sequence[MpmField], unit: LengthUnit) -> None:
    tags = [f.tag for f in fields_]
    if "63" not in tags:
        raise _refuse(Why.MISSING_CRC, "the merchant code has no CRC (ID 63); it may be cut off or damaged")
    if tags[-1] != "63":
        raise _refuse(Why.CRC_NOT_LAST, "the merchant code has data after its CRC (ID 63 must be last)")
    crc_field = fields_[-1]
    if len(crc_field.value) != 4 or not re.fullmatch(r"[0-9A-Fa-f]{4}", crc_field.value):
        raise _refuse(Why.CRC_MISMATCH, f"the CRC {crc_field.value!r} is not four hex digits")
    body = text[: len(text) - 4]
    expected = mpm_crc(body)
    if crc_field.value.upper() != expected:
        raise _refuse(Why.CRC_MISMATCH, f"the CRC is {crc_field.value} but the code computes to {expected}; "
                                        "the code is damaged or was altered")


def _check_mpm_fields(code: MerchantPresentedCode) -> None:
    first = code.fields[0]
    if first.tag != "00":
        raise _refuse(Why.MISSING_FIELD, "an EMVCo merchant code starts with the payload format indicator (ID 00)")
    if first.value not in ("01", "02"):
        raise _refuse(Why.UNSUPPORTED_PAYLOAD_FORMAT,
                      f"payload format indicator {first.value!r} is not supported (01, or 02 as used by DuitNow)")
    if not code.merchant_accounts:
        raise _refuse(Why.MISSING_FIELD, "the merchant code names no merchant account (IDs 02-51)")
    checks: list[tuple[str, str, str]] = [
        ("01", r"1[12]", "11 (static) or 12 (dynamic)"),
        ("52", r"\d{4}", "a four-digit merchant category code"),
        ("53", r"\d{3}", "a three-digit ISO 4217 currency code"),
        ("54", r"(?=.{1,13}$)" + _AMOUNT.pattern, "an amount of up to 13 characters like 12.30"),
        ("55", r"0[123]", "01, 02 or 03"),
        ("58", r"[A-Z]{2}", "a two-letter country code"),
    ]
    for tag, pattern, allowed in checks:
        value = code.value(tag)
        if value is not None and not re.fullmatch(pattern, value):
            raise _refuse(Why.INVALID_FIELD, f"ID {tag} is {value!r}; expected {allowed}")
    # 59 name (25) and 60 city (15) are not held to their lengths when read: real codes go over
    # them (a PIX city of 16 characters); `build_mpm` callers take them from validated config.
    for tag in ("59", "60"):
        if code.value(tag) == "":
            raise _refuse(Why.INVALID_FIELD, f"ID {tag} is empty")


def parse_mpm(text: str, *, check_crc: bool = True) -> MerchantPresentedCode:
    """Parse an EMVCo merchant-presented payload. `check_crc=False` only for diagnosis of a code
    refused for its CRC (never to pay)."""
    check_text(text)
    if len(text) < 4:
        raise _refuse(Why.TRUNCATED, f"{len(text)} characters cannot hold an EMVCo merchant code")
    problem: QrPayloadError | None = None
    for unit in ("chars", "utf8_bytes"):
        if unit == "utf8_bytes" and text.isascii():
            break
        try:
            fields_ = _parse_fields(text, unit)  # type: ignore[arg-type]
        except QrPayloadError as exc:
            problem = problem or exc
            continue
        code = MerchantPresentedCode(fields_, unit)  # type: ignore[arg-type]
        if check_crc:
            _check_crc(text, fields_, unit)  # type: ignore[arg-type]
        _check_mpm_fields(code)
        return code
    assert problem is not None
    raise problem


def build_mpm(fields_: Sequence[tuple[str, str | Sequence[tuple[str, str]]]]) -> str:
    """Write an MPM payload from (ID, value or [(sub-ID, value), ...]) pairs, in the order given,
    lengths in characters, and append the CRC (ID 63). The result is parsed back before it is
    returned, so a builder bug can never put a code on the screen that a wallet would refuse."""
    pairs: list[tuple[str, str]] = []
    for tag, value in fields_:
        if tag == "63":
            raise _refuse(Why.INVALID_FIELD, "the CRC (ID 63) is computed, not given")
        pairs.append((tag, value if isinstance(value, str) else _join_tlv(value)))
    body = _join_tlv(pairs) + "6304"
    text = body + mpm_crc(body)
    parse_mpm(text)
    return text


def dynamic_mpm(
    *, merchant_account: tuple[str, Sequence[tuple[str, str]]], mcc: str, amount: Money, country: str,
    merchant_name: str, merchant_city: str, reference: str, terminal_label: str | None = None,
) -> str:
    """A dynamic (point of initiation 12) merchant code for one payment: amount, currency, and the
    reference (62/05) that the wallet sends back with the payment."""
    if not 1 <= len(reference) <= 25:
        raise _refuse(Why.INVALID_FIELD, "the reference (62/05) must be 1-25 characters")
    additional = [("05", reference)]
    if terminal_label:
        additional.append(("07", terminal_label))
    return build_mpm([
        ("00", "01"), ("01", "12"), merchant_account, ("52", mcc), ("53", amount.currency.numeric_str),
        ("54", amount.plain()), ("58", country), ("59", merchant_name), ("60", merchant_city),
        ("62", additional),
    ])


# ================================================================================================
# EMVCo consumer-presented mode (CPM)


def _cpm_tlv(data: bytes) -> tuple[tlv.Tlv, ...]:
    """CPM data is BER-TLV, read by the same strict parser as card answers."""
    try:
        return tlv.parse(data)
    except TlvError as exc:
        raise _refuse(Why.MALFORMED_TLV, f"CPM data is malformed: {exc.message}") from None



_CPM_FIELDS: Mapping[int, str] = {
    0x4F: "aid", 0x50: "label", 0x57: "track2", 0x5A: "pan", 0x5F20: "cardholder_name",
    0x5F24: "expiry", 0x5F2D: "language", 0x5F34: "pan_sequence", 0x82: "aip", 0x9F08: "app_version",
    0x9F10: "iad", 0x9F19: "token_requestor_id", 0x9F24: "par", 0x9F25: "pan_last4", 0x9F26: "cryptogram",
    0x9F27: "cid", 0x9F36: "atc", 0x9F37: "unpredictable_number", 0x9F74: "issuer_data",
}
_SECRET_FIELDS = frozenset({"pan", "track2"})


@dataclass(frozen=True, slots=True)
class CpmApplication:
    """One application template (61) merged with the common data template (62). Card data (PAN,
    track 2) is kept out of `repr` and `public_dict`; the payment flow tokens and seals it."""

    aid: str | None
    label: str | None
    values: Mapping[str, str] = field(repr=False)  # name -> hex (secrets included)
    unknown_tags: tuple[str, ...] = ()

    def hexvalue(self, name: str) -> str | None:
        return self.values.get(name)

    @property
    def pan(self) -> str | None:
        """The card number from 5A, else from track 2 (57); None when neither is present."""
        pan = self.values.get("pan")
        if pan:
            return pan.upper().rstrip("F")
        track2 = self.values.get("track2")
        if track2:
            return track2.upper().split("D", 1)[0]
        return None

    @property
    def expiry(self) -> date | None:
        """Last valid day, from 5F24 (YYMMDD) or track 2 (YYMM)."""
        raw = self.values.get("expiry")
        yymm = raw[:4] if raw else None
        if yymm is None and self.values.get("track2") and "D" in self.values["track2"].upper():
            yymm = self.values["track2"].upper().split("D", 1)[1][:4]
        if not yymm or not yymm.isdigit() or len(yymm) != 4:
            return None
        year, month = 2000 + int(yymm[:2]), int(yymm[2:])
        if not 1 <= month <= 12:
            return None
        nxt = date(year + (month == 12), month % 12 + 1, 1)
        return date.fromordinal(nxt.toordinal() - 1)

    @property
    def cardholder_name(self) -> str | None:
        raw = self.values.get("cardholder_name")
        return bytes.fromhex(raw).decode("latin-1").strip() if raw else None

    def public_dict(self) -> dict[str, object]:
        hidden = {*_SECRET_FIELDS, "cardholder_name", "aid", "label"}
        return {"aid": self.aid, "label": self.label,
                **{k: v for k, v in self.values.items() if k not in hidden},
                "unknown_tags": list(self.unknown_tags)}


@dataclass(frozen=True, slots=True)
class ConsumerPresentedCode:
    applications: tuple[CpmApplication, ...]
    payload_size: int
    kind: CodeKind = field(default=CodeKind.CPM, init=False)

    @property
    def application(self) -> CpmApplication:
        """The application the terminal pays with: the first one (the wallet lists its preference first)."""
        return self.applications[0]


def _app_values(items: Iterable[tlv.Tlv], values: dict[str, str], unknown: list[str]) -> None:
    for item in items:
        name = _CPM_FIELDS.get(item.tag)
        if item.children is not None and item.tag in (0x63, 0x64):  # application / common transparent template
            _app_values(item.children, values, unknown)
            continue
        if name is None:
            unknown.append(f"{item.tag:X}")
            continue
        if name in values:
            raise _refuse(Why.DUPLICATE_TAG, f"CPM tag {item.tag:X} appears twice in one application")
        values[name] = item.value.hex().upper()


def _text_value(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return bytes.fromhex(raw).decode("ascii")
    except UnicodeDecodeError:
        return None


def parse_cpm_bytes(data: bytes) -> ConsumerPresentedCode:
    """The BER-TLV body of a CPM code (after base64)."""
    items = _cpm_tlv(data)
    if not items or items[0].tag != 0x85 or items[0].value != b"CPV01":
        raise _refuse(Why.NOT_CPV01, "a consumer code starts with payload format indicator 85 = CPV01")
    seen_common = False
    apps: list[tuple[tlv.Tlv, ...]] = []
    common: tuple[tlv.Tlv, ...] = ()
    for item in items[1:]:
        if item.tag == 0x85:
            raise _refuse(Why.DUPLICATE_TAG, "payload format indicator 85 appears twice")
        if item.tag == 0x61 and item.children is not None:
            apps.append(item.children)
        elif item.tag == 0x62 and item.children is not None:
            if seen_common:
                raise _refuse(Why.DUPLICATE_TAG, "common data template 62 appears twice")
            seen_common, common = True, item.children
        else:
            raise _refuse(Why.MALFORMED_TLV, f"unexpected top-level tag {item.tag:X} in a consumer code")
    if not apps:
        raise _refuse(Why.NO_APPLICATION, "the consumer code has no application template (61)")
    result = []
    for app in apps:
        values: dict[str, str] = {}
        unknown: list[str] = []
        _app_values(app, values, unknown)
        shared: dict[str, str] = {}
        _app_values(common, shared, unknown)
        for k, v in shared.items():
            if k in values and values[k] != v:
                raise _refuse(Why.DUPLICATE_TAG, f"CPM {k} differs between application and common data")
            values.setdefault(k, v)
        result.append(CpmApplication(values.get("aid"), _text_value(values.get("label")), values, tuple(unknown)))
    return ConsumerPresentedCode(tuple(result), len(data))


def parse_cpm(text: str) -> ConsumerPresentedCode:
    check_text(text)
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise _refuse(Why.MALFORMED_BASE64, "the consumer code is not valid base64") from None
    return parse_cpm_bytes(data)


# ================================================================================================
# Wallet payment codes


@dataclass(frozen=True, slots=True)
class NumericWalletCode:
    """A numeric code from the wallet app; only the backend knows whose it is (online only)."""

    digits: str = field(repr=False)
    kind: CodeKind = field(default=CodeKind.WALLET_NUMERIC, init=False)

    @property
    def masked(self) -> str:
        return self.digits[:6] + "*" * (len(self.digits) - 10) + self.digits[-4:]


def parse_numeric(text: str, prefixes: Sequence[str]) -> NumericWalletCode:
    check_text(text)
    if not (text.isascii() and text.isdigit() and 18 <= len(text) <= 19):
        raise _refuse(Why.NOT_A_PAYMENT_CODE, "a numeric wallet code is 18 or 19 digits")
    if not any(text.startswith(p) for p in prefixes):
        raise _refuse(Why.UNKNOWN_NUMERIC_PREFIX, "the numeric code does not start with a wallet prefix "
                                                  "this terminal accepts")
    return NumericWalletCode(text)


# --- signed wallet codes (docs/wallet-code.md) -----------------------------------------------

WALLET_CODE_PREFIX = "WP1:"
WALLET_CODE_VERSION = 1
SIGNING_CONTEXT = b"walletpos wallet code v1\x00"
_TIERS: tuple[WalletTier, ...] = (WalletTier.UNVERIFIED, WalletTier.REAL_NAME)
_FLAG_CAP = 0x01
_ID_CHARS = re.compile(r"[A-Za-z0-9._-]{1,32}")
SIGNATURE_SIZE = 64


@dataclass(frozen=True, slots=True)
class SignedWalletCode:
    """A signed wallet code as read (not yet verified: see `verify_wallet_code`)."""

    key_id: str
    wallet_id: str
    tier: WalletTier
    counter: int
    issued_at: int  # Unix seconds, UTC
    valid_for: int  # seconds
    cap: Money | None
    signed_bytes: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    kind: CodeKind = field(default=CodeKind.WALLET_SIGNED, init=False)

    @property
    def expires_at(self) -> int:
        return self.issued_at + self.valid_for

    def summary(self) -> dict[str, object]:
        return {"key_id": self.key_id, "wallet_id": self.wallet_id, "tier": self.tier.value,
                "counter": self.counter, "issued_at": self.issued_at, "expires_at": self.expires_at,
                "cap": self.cap.minor if self.cap else None,
                "cap_currency": self.cap.currency.alpha if self.cap else None}


def _short_str(name: str, value: str) -> bytes:
    if not _ID_CHARS.fullmatch(value):
        raise _refuse(Why.MALFORMED_WALLET_CODE, f"{name} must be 1-32 of A-Z a-z 0-9 . _ -")
    raw = value.encode("ascii")
    return bytes([len(raw)]) + raw


def wallet_code_body(
    *, key_id: str, wallet_id: str, tier: WalletTier, counter: int, issued_at: int, valid_for: int = 60,
    cap: Money | None = None,
) -> bytes:
    """The bytes an issuer signs (see docs/wallet-code.md)."""
    if not 0 <= counter < 2**32:
        raise _refuse(Why.MALFORMED_WALLET_CODE, "the counter must fit in 32 bits")
    if not 0 <= issued_at < 2**32:
        raise _refuse(Why.MALFORMED_WALLET_CODE, "issued_at must fit in 32 bits")
    if not 1 <= valid_for < 2**16:
        raise _refuse(Why.MALFORMED_WALLET_CODE, "valid_for must be 1-65535 seconds")
    out = bytearray([WALLET_CODE_VERSION, _FLAG_CAP if cap is not None else 0])
    out += _short_str("key id", key_id) + _short_str("wallet id", wallet_id)
    out.append(_TIERS.index(tier))
    out += counter.to_bytes(4, "big") + issued_at.to_bytes(4, "big") + valid_for.to_bytes(2, "big")
    if cap is not None:
        if cap.minor < 0:
            raise _refuse(Why.MALFORMED_WALLET_CODE, "a cap cannot be negative")
        out += cap.currency.numeric.to_bytes(2, "big") + cap.minor.to_bytes(5, "big")
    return bytes(out)


def encode_wallet_code(body: bytes, signature: bytes) -> str:
    """The QR text of a signed code: prefix + base45 (RFC 9285) of body || signature."""
    if len(signature) != SIGNATURE_SIZE:
        raise _refuse(Why.MALFORMED_WALLET_CODE, "an Ed25519 signature is 64 bytes")
    return WALLET_CODE_PREFIX + base45.b45encode(body + signature).decode("ascii")


def signing_input(body: bytes) -> bytes:
    return SIGNING_CONTEXT + body


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _refuse(Why.MALFORMED_WALLET_CODE, "the wallet code is cut short")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def short_str(self, name: str) -> str:
        raw = self.take(self.uint(1))
        text = raw.decode("ascii", "replace")
        if not _ID_CHARS.fullmatch(text):
            raise _refuse(Why.MALFORMED_WALLET_CODE, f"the {name} of the wallet code is not valid")
        return text


def parse_wallet_code(text: str) -> SignedWalletCode:
    """Read the structure of a signed wallet code (no signature or time check yet)."""
    check_text(text)
    if not text.startswith(WALLET_CODE_PREFIX):
        raise _refuse(Why.NOT_A_PAYMENT_CODE, f"a signed wallet code starts with {WALLET_CODE_PREFIX}")
    payload = text[len(WALLET_CODE_PREFIX):]
    try:
        raw = base45.b45decode(payload)
    except (ValueError, TypeError, UnicodeError):
        raise _refuse(Why.MALFORMED_WALLET_CODE, "the wallet code is not valid base45") from None
    if base45.b45encode(raw).decode("ascii") != payload:
        raise _refuse(Why.MALFORMED_WALLET_CODE, "the wallet code is not in canonical base45")
    if len(raw) < 2 + SIGNATURE_SIZE:
        raise _refuse(Why.MALFORMED_WALLET_CODE, "the wallet code is too short")
    body, signature = raw[:-SIGNATURE_SIZE], raw[-SIGNATURE_SIZE:]
    r = _Reader(body)
    version = r.uint(1)
    if version != WALLET_CODE_VERSION:
        raise _refuse(Why.UNSUPPORTED_VERSION, f"wallet code version {version} is not supported (this terminal "
                                               f"reads version {WALLET_CODE_VERSION})")
    flags = r.uint(1)
    if flags & ~_FLAG_CAP:
        raise _refuse(Why.MALFORMED_WALLET_CODE, f"unknown wallet code flags {flags:02X}")
    key_id = r.short_str("key id")
    wallet_id = r.short_str("wallet id")
    tier_index = r.uint(1)
    if tier_index >= len(_TIERS):
        raise _refuse(Why.MALFORMED_WALLET_CODE, f"unknown wallet tier {tier_index}")
    counter, issued_at, valid_for = r.uint(4), r.uint(4), r.uint(2)
    if valid_for == 0:
        raise _refuse(Why.MALFORMED_WALLET_CODE, "the wallet code is valid for zero seconds")
    cap = None
    if flags & _FLAG_CAP:
        numeric, minor = r.uint(2), r.uint(5)
        try:
            cap = Money(minor, currency(numeric))
        except MoneyError:
            raise _refuse(Why.MALFORMED_WALLET_CODE, f"the cap of the wallet code is not valid "
                                                     f"(currency {numeric}, {minor})") from None
    if r.pos != len(body):
        raise _refuse(Why.MALFORMED_WALLET_CODE, "the wallet code has bytes left over")
    return SignedWalletCode(key_id, wallet_id, _TIERS[tier_index], counter, issued_at, valid_for, cap, body,
                            signature)


@dataclass(frozen=True, slots=True)
class VerifiedWalletCode:
    code: SignedWalletCode
    expires: datetime


def verify_wallet_code(
    code: SignedWalletCode, *, now: datetime, issuer_keys: Mapping[str, bytes], amount: Money | None = None,
    clock_skew_seconds: int = 30,
) -> VerifiedWalletCode:
    """Check key, signature, validity window and cap, in that order (so that only an authentic code
    can be called expired). Single use is checked by the journal when the payment is recorded."""
    key = issuer_keys.get(code.key_id)
    if key is None:
        raise _refuse(Why.UNKNOWN_KEY, f"the code is signed with issuer key {code.key_id!r}, which this terminal "
                                       "does not know (sync to receive new keys)")
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(code.signature, signing_input(code.signed_bytes))
    except (InvalidSignature, ValueError):
        raise _refuse(Why.BAD_SIGNATURE, "the code's signature does not verify: it was altered or forged") from None
    at = int(now.timestamp())
    if at > code.expires_at + clock_skew_seconds:
        raise _refuse(Why.EXPIRED, f"the code expired {at - code.expires_at} s ago; ask the customer to refresh it")
    if code.issued_at > at + clock_skew_seconds:
        raise _refuse(Why.NOT_YET_VALID, "the code was issued in the future; check the terminal clock")
    if amount is not None and code.cap is not None:
        if code.cap.currency != amount.currency:
            raise _refuse(Why.CAP_CURRENCY, f"the code's cap is in {code.cap.currency}, the payment in "
                                            f"{amount.currency}")
        if amount.minor > code.cap.minor:
            raise _refuse(Why.CAP_EXCEEDED, f"the amount is above the code's cap of {code.cap}")
    return VerifiedWalletCode(code, datetime.fromtimestamp(code.expires_at, UTC))


# ================================================================================================
# Telling codes apart


@dataclass(frozen=True, slots=True)
class OtherCode:
    """Readable, but not a payment code (a web address, text, another scheme)."""

    text: str
    description: str
    kind: CodeKind = field(default=CodeKind.OTHER, init=False)


PaymentCode = MerchantPresentedCode | ConsumerPresentedCode | SignedWalletCode | NumericWalletCode | OtherCode

_CPM_B64_PREFIX = "hQVDUFYw"  # base64 of 85 05 "CPV0"


def kind_of(text: str, numeric_prefixes: Sequence[str] = ()) -> CodeKind:
    """Which family a text claims to be, from its first characters only (no validation)."""
    if text.startswith(("000201", "000202")):
        return CodeKind.MPM
    if text.startswith(_CPM_B64_PREFIX):
        return CodeKind.CPM
    if text.startswith(WALLET_CODE_PREFIX):
        return CodeKind.WALLET_SIGNED
    if (text.isascii() and text.isdigit() and 18 <= len(text) <= 19
            and any(text.startswith(p) for p in numeric_prefixes)):
        return CodeKind.WALLET_NUMERIC
    return CodeKind.OTHER


def _describe_other(text: str) -> str:
    lowered = text.lower()
    if re.match(r"[a-z][a-z0-9+.-]*://", lowered) or lowered.startswith(("www.", "mailto:", "tel:")):
        return "a web address or link, not a payment code"
    if lowered.startswith("wifi:"):
        return "Wi-Fi settings, not a payment code"
    if text.isdigit():
        return "a number that is not a wallet payment code this terminal accepts"
    if text.startswith("00") and text[:4].isdigit():
        return "TLV text that is not an EMVCo payment code"
    return "text that is not a payment code"


def classify(text: str, numeric_prefixes: Sequence[str] = ()) -> PaymentCode:
    """Parse a scanned text into the payment code it is, or `OtherCode`. A text that claims a payment
    family but is malformed raises `QrPayloadError` with the reason."""
    check_text(text)
    kind = kind_of(text, numeric_prefixes)
    if kind is CodeKind.MPM:
        return parse_mpm(text)
    if kind is CodeKind.CPM:
        return parse_cpm(text)
    if kind is CodeKind.WALLET_SIGNED:
        return parse_wallet_code(text)
    if kind is CodeKind.WALLET_NUMERIC:
        return parse_numeric(text, numeric_prefixes)
    return OtherCode(text, _describe_other(text))


def display_text(code: PaymentCode, text: str) -> str:
    """What may be shown or printed of a code's text: never card data or a numeric bearer code."""
    if isinstance(code, ConsumerPresentedCode):
        app = code.application
        pan = app.pan
        masked = (pan[:6] + "*" * (len(pan) - 10) + pan[-4:]) if pan and len(pan) >= 13 else "****"
        return f"<consumer code, {code.payload_size} bytes, {app.aid or 'no AID'}, card {masked}>"
    if isinstance(code, NumericWalletCode):
        return code.masked
    return text


__all__ = [
    "MAX_CODE_LENGTH", "CodeKind", "ConsumerPresentedCode", "CpmApplication", "Currency", "MerchantPresentedCode",
    "MpmField", "NumericWalletCode", "OtherCode", "PaymentCode", "SignedWalletCode", "VerifiedWalletCode", "Why",
    "build_mpm", "check_text", "classify", "crc16_ccitt_false", "display_text", "dynamic_mpm", "encode_wallet_code",
    "kind_of", "mpm_crc", "parse_cpm", "parse_cpm_bytes", "parse_mpm", "parse_numeric", "parse_wallet_code",
    "signing_input", "verify_wallet_code", "wallet_code_body",
]
