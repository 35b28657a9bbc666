"""EMVCo merchant-presented mode (MPM, "000201..."): the code a merchant shows and a wallet scans.

TLV text, each data object an ID of two digits, a length of two digits and the value. Lengths count
characters (EMVCo MPM 4.x); a code whose lengths only add up when counted in UTF-8 bytes (one
VietQR source does this) is read that way as a fallback and remembers it, so it round-trips. The
CRC (ID 63, CRC-16/CCITT-FALSE over the UTF-8 bytes of everything before its value, including
"6304") must be the last object and must verify: a code without a CRC or with a wrong one is
refused, because the CRC is the only integrity check a camera read has. Hex digits of the CRC are
compared without regard to case.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from terminal.core.money import Money, currency
from terminal.core.qrpay.common import CodeKind, Why, check_text, refuse
from terminal.errors import MoneyError, QrPayloadError


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
            raise refuse(Why.TRUNCATED, f"{where}: the code ends inside a data object header at position {i}")
        tag, length = head[:2], head[2:]
        if not (tag.isascii() and tag.isdigit()):
            raise refuse(Why.INVALID_TAG, f"{where}: {tag!r} at position {i} is not a two-digit ID")
        if not (length.isascii() and length.isdigit()):
            raise refuse(Why.INVALID_LENGTH, f"{where}: ID {tag} has length {length!r}, not two digits")
        size = int(length)
        start, end = i + 4, i + 4 + size
        if end > n:
            raise refuse(Why.TRUNCATED, f"{where}: ID {tag} says {size} but only {n - start} remain")
        if raw is not None:
            try:
                value = raw[start:end].decode("utf-8")
            except UnicodeDecodeError:
                raise refuse(Why.INVALID_LENGTH, f"{where}: ID {tag} length {size} splits a character") from None
        else:
            value = text[start:end]
        if tag in seen:
            raise refuse(Why.DUPLICATE_TAG, f"{where}: ID {tag} appears twice")
        seen.add(tag)
        out.append((tag, value))
        i = end
    return out


def _join_tlv(pairs: Iterable[tuple[str, str]], unit: LengthUnit = "chars") -> str:
    parts = []
    for tag, value in pairs:
        size = _vlen(value, unit)
        if not (len(tag) == 2 and tag.isdigit()):
            raise refuse(Why.INVALID_TAG, f"cannot write ID {tag!r}: IDs are two digits")
        if size > 99:
            raise refuse(Why.INVALID_LENGTH, f"cannot write ID {tag}: value of {size} exceeds 99")
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
        point = self.value("01")
        return "static" if point == "11" else "dynamic" if point == "12" else None

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
        raise refuse(Why.MISSING_CRC, "the merchant code has no CRC (ID 63); it may be cut off or damaged")
    if tags[-1] != "63":
        raise refuse(Why.CRC_NOT_LAST, "the merchant code has data after its CRC (ID 63 must be last)")
    crc_field = fields_[-1]
    if len(crc_field.value) != 4 or not re.fullmatch(r"[0-9A-Fa-f]{4}", crc_field.value):
        raise refuse(Why.CRC_MISMATCH, f"the CRC {crc_field.value!r} is not four hex digits")
    body = text[: len(text) - 4]
    expected = mpm_crc(body)
    if crc_field.value.upper() != expected:
        raise refuse(Why.CRC_MISMATCH, f"the CRC is {crc_field.value} but the code computes to {expected}; "
                                       "the code is damaged or was altered")


def _check_mpm_fields(code: MerchantPresentedCode) -> None:
    first = code.fields[0]
    if first.tag != "00":
        raise refuse(Why.MISSING_FIELD, "an EMVCo merchant code starts with the payload format indicator (ID 00)")
    if first.value not in ("01", "02"):
        raise refuse(Why.UNSUPPORTED_PAYLOAD_FORMAT,
                     f"payload format indicator {first.value!r} is not supported (01, or 02 as used by DuitNow)")
    if not code.merchant_accounts:
        raise refuse(Why.MISSING_FIELD, "the merchant code names no merchant account (IDs 02-51)")
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
            raise refuse(Why.INVALID_FIELD, f"ID {tag} is {value!r}; expected {allowed}")
    # 59 name (25) and 60 city (15) are not held to their lengths when read: real codes go over
    # them (a PIX city of 16 characters); `build_mpm` callers take them from validated config.
    for tag in ("59", "60"):
        if code.value(tag) == "":
            raise refuse(Why.INVALID_FIELD, f"ID {tag} is empty")


def parse_mpm(text: str, *, check_crc: bool = True) -> MerchantPresentedCode:
    """Parse an EMVCo merchant-presented payload. `check_crc=False` only for diagnosis of a code
    refused for its CRC (never to pay)."""
    check_text(text)
    if len(text) < 4:
        raise refuse(Why.TRUNCATED, f"{len(text)} characters cannot hold an EMVCo merchant code")
    problem: QrPayloadError | None = None
    units: tuple[LengthUnit, ...] = ("chars", "utf8_bytes")
    for unit in units:
        if unit == "utf8_bytes" and text.isascii():
            break
        try:
            fields_ = _parse_fields(text, unit)
        except QrPayloadError as exc:
            problem = problem or exc
            continue
        code = MerchantPresentedCode(fields_, unit)
        if check_crc:
            _check_crc(text, fields_, unit)
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
            raise refuse(Why.INVALID_FIELD, "the CRC (ID 63) is computed, not given")
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
        raise refuse(Why.INVALID_FIELD, "the reference (62/05) must be 1-25 characters")
    additional = [("05", reference)]
    if terminal_label:
        additional.append(("07", terminal_label))
    return build_mpm([
        ("00", "01"), ("01", "12"), merchant_account, ("52", mcc), ("53", amount.currency.numeric_str),
        ("54", amount.plain()), ("58", country), ("59", merchant_name), ("60", merchant_city),
        ("62", additional),
    ])


__all__ = [
    "LengthUnit", "MerchantPresentedCode", "MpmField", "build_mpm", "crc16_ccitt_false", "dynamic_mpm", "mpm_crc",
    "parse_mpm",
]
