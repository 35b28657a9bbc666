"""What every payment-code family shares: the families (`CodeKind`), the machine-readable reasons of
a refusal (`Why`), the checks every scanned text gets first (`check_text`) and the error they raise
(`QrPayloadError`, from `terminal.errors`)."""

from __future__ import annotations

from enum import StrEnum

from terminal.errors import QrPayloadError

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
    INVALID_CHARACTER = "invalid_character"
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


def refuse(reason: Why, message: str) -> QrPayloadError:
    """The error a parser raises for `reason` (the caller raises it)."""
    return QrPayloadError(message, reason=reason.value)


def check_text(text: object) -> str:
    """The checks every scanned text gets before any parser sees it."""
    if not isinstance(text, str):
        raise refuse(Why.NOT_A_PAYMENT_CODE, f"a code must be text, got {type(text).__name__}")
    if not text:
        raise refuse(Why.EMPTY, "the code is empty")
    if len(text) > MAX_CODE_LENGTH:
        raise refuse(Why.TOO_LONG, f"the code is {len(text)} characters long; no payment code has more than "
                                   f"{MAX_CODE_LENGTH}")
    for i, ch in enumerate(text):
        if ch < " " or ch == "\x7f":
            name = "a NUL character" if ch == "\x00" else f"control character U+{ord(ch):04X}"
            raise refuse(Why.CONTROL_CHARACTER, f"the code contains {name} at position {i}; "
                                                "no payment code does")
        if "\ud800" <= ch <= "\udfff":  # half of a UTF-16 pair: not a character, cannot be UTF-8
            raise refuse(Why.INVALID_CHARACTER, f"the code contains U+{ord(ch):04X} at position {i}, which is not a "
                                                "character (a lone surrogate); no scanned code does")
    return text


__all__ = ["MAX_CODE_LENGTH", "CodeKind", "QrPayloadError", "Why", "check_text", "refuse"]
