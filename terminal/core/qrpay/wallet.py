"""Wallet payment codes: numeric codes (18-19 digits with a configured prefix) that only the backend
can resolve, and signed codes ("WP1:" + base45) verified offline against an issuer Ed25519 key (see
docs/wallet-code.md for the byte layout)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import base45
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from terminal.core.money import Money, currency
from terminal.core.qrpay.common import CodeKind, Why, check_text, refuse
from terminal.core.rules import WalletTier
from terminal.errors import MoneyError


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
        raise refuse(Why.NOT_A_PAYMENT_CODE, "a numeric wallet code is 18 or 19 digits")
    if not any(text.startswith(p) for p in prefixes):
        raise refuse(Why.UNKNOWN_NUMERIC_PREFIX, "the numeric code does not start with a wallet prefix "
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
        raise refuse(Why.MALFORMED_WALLET_CODE, f"{name} must be 1-32 of A-Z a-z 0-9 . _ -")
    raw = value.encode("ascii")
    return bytes([len(raw)]) + raw


def wallet_code_body(
    *, key_id: str, wallet_id: str, tier: WalletTier, counter: int, issued_at: int, valid_for: int = 60,
    cap: Money | None = None,
) -> bytes:
    """The bytes an issuer signs (see docs/wallet-code.md)."""
    if not 0 <= counter < 2**32:
        raise refuse(Why.MALFORMED_WALLET_CODE, "the counter must fit in 32 bits")
    if not 0 <= issued_at < 2**32:
        raise refuse(Why.MALFORMED_WALLET_CODE, "issued_at must fit in 32 bits")
    if not 1 <= valid_for < 2**16:
        raise refuse(Why.MALFORMED_WALLET_CODE, "valid_for must be 1-65535 seconds")
    out = bytearray([WALLET_CODE_VERSION, _FLAG_CAP if cap is not None else 0])
    out += _short_str("key id", key_id) + _short_str("wallet id", wallet_id)
    out.append(_TIERS.index(tier))
    out += counter.to_bytes(4, "big") + issued_at.to_bytes(4, "big") + valid_for.to_bytes(2, "big")
    if cap is not None:
        if cap.minor < 0:
            raise refuse(Why.MALFORMED_WALLET_CODE, "a cap cannot be negative")
        out += cap.currency.numeric.to_bytes(2, "big") + cap.minor.to_bytes(5, "big")
    return bytes(out)


def encode_wallet_code(body: bytes, signature: bytes) -> str:
    """The QR text of a signed code: prefix + base45 (RFC 9285) of body || signature."""
    if len(signature) != SIGNATURE_SIZE:
        raise refuse(Why.MALFORMED_WALLET_CODE, "an Ed25519 signature is 64 bytes")
    encoded: bytes = base45.b45encode(body + signature)
    return WALLET_CODE_PREFIX + encoded.decode("ascii")


def signing_input(body: bytes) -> bytes:
    return SIGNING_CONTEXT + body


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise refuse(Why.MALFORMED_WALLET_CODE, "the wallet code is cut short")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def short_str(self, name: str) -> str:
        raw = self.take(self.uint(1))
        text = raw.decode("ascii", "replace")
        if not _ID_CHARS.fullmatch(text):
            raise refuse(Why.MALFORMED_WALLET_CODE, f"the {name} of the wallet code is not valid")
        return text


def parse_wallet_code(text: str) -> SignedWalletCode:
    """Read the structure of a signed wallet code (no signature or time check yet)."""
    check_text(text)
    if not text.startswith(WALLET_CODE_PREFIX):
        raise refuse(Why.NOT_A_PAYMENT_CODE, f"a signed wallet code starts with {WALLET_CODE_PREFIX}")
    payload = text[len(WALLET_CODE_PREFIX):]
    try:
        raw: bytes = base45.b45decode(payload)
    except (ValueError, TypeError, UnicodeError):
        raise refuse(Why.MALFORMED_WALLET_CODE, "the wallet code is not valid base45") from None
    canonical: bytes = base45.b45encode(raw)
    if canonical.decode("ascii") != payload:
        raise refuse(Why.MALFORMED_WALLET_CODE, "the wallet code is not in canonical base45")
    if len(raw) < 2 + SIGNATURE_SIZE:
        raise refuse(Why.MALFORMED_WALLET_CODE, "the wallet code is too short")
    body, signature = raw[:-SIGNATURE_SIZE], raw[-SIGNATURE_SIZE:]
    r = _Reader(body)
    version = r.uint(1)
    if version != WALLET_CODE_VERSION:
        raise refuse(Why.UNSUPPORTED_VERSION, f"wallet code version {version} is not supported (this terminal "
                                              f"reads version {WALLET_CODE_VERSION})")
    flags = r.uint(1)
    if flags & ~_FLAG_CAP:
        raise refuse(Why.MALFORMED_WALLET_CODE, f"unknown wallet code flags {flags:02X}")
    key_id = r.short_str("key id")
    wallet_id = r.short_str("wallet id")
    tier_index = r.uint(1)
    if tier_index >= len(_TIERS):
        raise refuse(Why.MALFORMED_WALLET_CODE, f"unknown wallet tier {tier_index}")
    counter, issued_at, valid_for = r.uint(4), r.uint(4), r.uint(2)
    if valid_for == 0:
        raise refuse(Why.MALFORMED_WALLET_CODE, "the wallet code is valid for zero seconds")
    cap = None
    if flags & _FLAG_CAP:
        numeric, minor = r.uint(2), r.uint(5)
        try:
            cap = Money(minor, currency(numeric))
        except MoneyError:
            raise refuse(Why.MALFORMED_WALLET_CODE, f"the cap of the wallet code is not valid "
                                                    f"(currency {numeric}, {minor})") from None
    if r.pos != len(body):
        raise refuse(Why.MALFORMED_WALLET_CODE, "the wallet code has bytes left over")
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
        raise refuse(Why.UNKNOWN_KEY, f"the code is signed with issuer key {code.key_id!r}, which this terminal "
                                      "does not know (sync to receive new keys)")
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(code.signature, signing_input(code.signed_bytes))
    except (InvalidSignature, ValueError):
        raise refuse(Why.BAD_SIGNATURE, "the code's signature does not verify: it was altered or forged") from None
    at = int(now.timestamp())
    if at > code.expires_at + clock_skew_seconds:
        raise refuse(Why.EXPIRED, f"the code expired {at - code.expires_at} s ago; ask the customer to refresh it")
    if code.issued_at > at + clock_skew_seconds:
        raise refuse(Why.NOT_YET_VALID, "the code was issued in the future; check the terminal clock")
    if amount is not None and code.cap is not None:
        if code.cap.currency != amount.currency:
            raise refuse(Why.CAP_CURRENCY, f"the code's cap is in {code.cap.currency}, the payment in "
                                           f"{amount.currency}")
        if amount.minor > code.cap.minor:
            raise refuse(Why.CAP_EXCEEDED, f"the amount is above the code's cap of {code.cap}")
    return VerifiedWalletCode(code, datetime.fromtimestamp(code.expires_at, UTC))


__all__ = [
    "SIGNATURE_SIZE", "SIGNING_CONTEXT", "WALLET_CODE_PREFIX", "WALLET_CODE_VERSION", "NumericWalletCode",
    "SignedWalletCode", "VerifiedWalletCode", "encode_wallet_code", "parse_numeric", "parse_wallet_code",
    "signing_input", "verify_wallet_code", "wallet_code_body",
]
