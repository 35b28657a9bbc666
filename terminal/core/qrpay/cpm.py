"""EMVCo consumer-presented mode (CPM): base64 of BER-TLV starting with 85 05 "CPV01", one or more
application templates (61) and an optional common data template (62). The card data in it (PAN,
track 2) is kept out of every `repr` and summary."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from terminal.core import tlv
from terminal.core.qrpay.common import CodeKind, Why, check_text, refuse
from terminal.errors import TlvError


def _cpm_tlv(data: bytes) -> tuple[tlv.Tlv, ...]:
    """CPM data is BER-TLV, read by the same strict parser as card answers."""
    try:
        return tlv.parse(data)
    except TlvError as exc:
        raise refuse(Why.MALFORMED_TLV, f"CPM data is malformed: {exc.message}") from None


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
            raise refuse(Why.DUPLICATE_TAG, f"CPM tag {item.tag:X} appears twice in one application")
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
        raise refuse(Why.NOT_CPV01, "a consumer code starts with payload format indicator 85 = CPV01")
    seen_common = False
    apps: list[tuple[tlv.Tlv, ...]] = []
    common: tuple[tlv.Tlv, ...] = ()
    for item in items[1:]:
        if item.tag == 0x85:
            raise refuse(Why.DUPLICATE_TAG, "payload format indicator 85 appears twice")
        if item.tag == 0x61 and item.children is not None:
            apps.append(item.children)
        elif item.tag == 0x62 and item.children is not None:
            if seen_common:
                raise refuse(Why.DUPLICATE_TAG, "common data template 62 appears twice")
            seen_common, common = True, item.children
        else:
            raise refuse(Why.MALFORMED_TLV, f"unexpected top-level tag {item.tag:X} in a consumer code")
    if not apps:
        raise refuse(Why.NO_APPLICATION, "the consumer code has no application template (61)")
    result = []
    for app in apps:
        values: dict[str, str] = {}
        unknown: list[str] = []
        _app_values(app, values, unknown)
        shared: dict[str, str] = {}
        _app_values(common, shared, unknown)
        for k, v in shared.items():
            if k in values and values[k] != v:
                raise refuse(Why.DUPLICATE_TAG, f"CPM {k} differs between application and common data")
            values.setdefault(k, v)
        result.append(CpmApplication(values.get("aid"), _text_value(values.get("label")), values, tuple(unknown)))
    return ConsumerPresentedCode(tuple(result), len(data))


def parse_cpm(text: str) -> ConsumerPresentedCode:
    check_text(text)
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise refuse(Why.MALFORMED_BASE64, "the consumer code is not valid base64") from None
    return parse_cpm_bytes(data)


__all__ = ["ConsumerPresentedCode", "CpmApplication", "parse_cpm", "parse_cpm_bytes"]
