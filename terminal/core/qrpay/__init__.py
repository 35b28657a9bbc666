"""Payment codes read by the camera or shown on the screen: parse into typed values, or refuse with a
`QrPayloadError` whose `reason` says what is wrong. Pure: text in, values out (the caller passes
`now`, the issuer keys and the configured numeric prefixes).

Four families, told apart by how they start (`classify`), one module each:

- `mpm`: EMVCo merchant-presented ("000201..."), TLV text whose CRC (ID 63) must verify;
- `cpm`: EMVCo consumer-presented (base64 of BER-TLV starting with 85 05 "CPV01");
- `wallet`: signed wallet codes ("WP1:" + base45, verified offline against an issuer Ed25519 key;
  docs/wallet-code.md) and numeric wallet codes (18-19 digits with a configured prefix, which only
  the backend can resolve).

Anything else (a web address, plain text, another scheme) is `OtherCode`: not a payment code
(`classify`). `common` holds what they share: `CodeKind`, the refusal reasons `Why`, and
`check_text`. Every name is importable from `terminal.core.qrpay` itself.
"""

from __future__ import annotations

from terminal.core.money import Currency
from terminal.core.qrpay.classify import OtherCode, PaymentCode, classify, display_text, kind_of, masked_text
from terminal.core.qrpay.common import MAX_CODE_LENGTH, CodeKind, QrPayloadError, Why, check_text
from terminal.core.qrpay.cpm import ConsumerPresentedCode, CpmApplication, parse_cpm, parse_cpm_bytes
from terminal.core.qrpay.mpm import (
    LengthUnit,
    MerchantPresentedCode,
    MpmField,
    build_mpm,
    crc16_ccitt_false,
    dynamic_mpm,
    mpm_crc,
    parse_mpm,
)
from terminal.core.qrpay.wallet import (
    SIGNATURE_SIZE,
    SIGNING_CONTEXT,
    WALLET_CODE_PREFIX,
    WALLET_CODE_VERSION,
    NumericWalletCode,
    SignedWalletCode,
    VerifiedWalletCode,
    encode_wallet_code,
    parse_numeric,
    parse_wallet_code,
    signing_input,
    verify_wallet_code,
    wallet_code_body,
)

__all__ = [
    "MAX_CODE_LENGTH", "SIGNATURE_SIZE", "SIGNING_CONTEXT", "WALLET_CODE_PREFIX", "WALLET_CODE_VERSION", "CodeKind",
    "ConsumerPresentedCode", "CpmApplication", "Currency", "LengthUnit", "MerchantPresentedCode", "MpmField",
    "NumericWalletCode", "OtherCode", "PaymentCode", "QrPayloadError", "SignedWalletCode", "VerifiedWalletCode", "Why",
    "build_mpm", "check_text", "classify", "crc16_ccitt_false", "display_text", "dynamic_mpm", "encode_wallet_code",
    "kind_of", "masked_text", "mpm_crc", "parse_cpm", "parse_cpm_bytes", "parse_mpm", "parse_numeric",
    "parse_wallet_code", "signing_input", "verify_wallet_code", "wallet_code_body",
]
