"""Telling codes apart: which family a scanned text is (`kind_of`, from its first characters only),
the parsed code it is (`classify`), and what of it may be shown (`display_text`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from terminal.core.cardmask import mask_card_numbers, mask_card_numbers_in_hex, mask_digits
from terminal.core.qrpay.common import CodeKind, check_text
from terminal.core.qrpay.cpm import ConsumerPresentedCode, parse_cpm
from terminal.core.qrpay.mpm import MerchantPresentedCode, parse_mpm
from terminal.core.qrpay.wallet import (
    WALLET_CODE_PREFIX,
    NumericWalletCode,
    SignedWalletCode,
    parse_numeric,
    parse_wallet_code,
)


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
        masked = mask_digits(pan) if pan and len(pan) >= 12 else "****"
        return f"<consumer code, {code.payload_size} bytes, {app.aid or 'no AID'}, card {masked}>"
    if isinstance(code, NumericWalletCode):
        return code.masked
    return masked_text(text, code.kind)  # a plain code may hold a card number (or track 2 data) in clear


def _mask_tlv_values(text: str, depth: int = 0) -> str:
    """ID-length-value text with the card numbers in its values masked. In TLV text a value's digits
    run on into the next ID, so a card number never stands alone: each value is masked on its own
    (a template's values too), and whatever does not split into objects (a damaged tail) has every
    run of digits holding a Luhn-valid card number masked."""
    out: list[str] = []
    i = 0
    while i + 4 <= len(text) and text[i:i + 4].isascii() and text[i:i + 4].isdigit():
        end = i + 4 + int(text[i + 2:i + 4])
        if end > len(text):
            break
        value = text[i + 4:end]
        masked = mask_card_numbers(value)
        if masked == value and depth < 2 and len(value) >= 4:
            masked = _mask_tlv_values(value, depth + 1)
        out.append(text[i:i + 4] + masked)
        i = end
    out.append(mask_card_numbers_in_hex(mask_card_numbers(text[i:])))
    return "".join(out)


def masked_text(text: str, kind: CodeKind) -> str:
    """What may be shown of a scanned text of the family `kind`, valid or not: card numbers (and track 2
    data) masked, also inside the values of a merchant code's TLV text."""
    if kind is CodeKind.MPM:
        return _mask_tlv_values(text)
    return mask_card_numbers(text)


__all__ = ["OtherCode", "PaymentCode", "classify", "display_text", "kind_of", "masked_text"]
