#!/usr/bin/env python3
"""Write the test vector of docs/wallet-code.md: a signed wallet code made with a fixed test issuer
key (never a production key), with every intermediate value, as JSON on standard output.

    scripts/make_wallet_code_vector.py > docs/wallet-code-vector.json

tests/qr/test_wallet_code.py checks that the file equals what this script makes, and that the
terminal accepts the code it holds.
"""

from __future__ import annotations

import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terminal.core import qrpay
from terminal.core.money import Money, currency
from terminal.core.rules import WalletTier

TEST_SEED = hashlib.sha256(b"walletpos wallet code test issuer key; not for production").digest()


def vector() -> dict[str, object]:
    key = Ed25519PrivateKey.from_private_bytes(TEST_SEED)
    fields = {"key_id": "test-2026", "wallet_id": "W0001234567", "tier": WalletTier.REAL_NAME, "counter": 42,
              "issued_at": 1795000000, "valid_for": 60, "cap": Money(20000, currency("CNY"))}
    body = qrpay.wallet_code_body(**fields)  # type: ignore[arg-type]
    signature = key.sign(qrpay.signing_input(body))
    text = qrpay.encode_wallet_code(body, signature)
    cap = fields["cap"]
    assert isinstance(cap, Money)
    return {
        "description": "Signed wallet code v1 made with the test issuer key (private seed given: never use it).",
        "issuer_private_seed_hex": TEST_SEED.hex(),
        "issuer_public_key_hex": key.public_key().public_bytes_raw().hex(),
        "fields": {"key_id": fields["key_id"], "wallet_id": fields["wallet_id"], "tier": "real_name",
                   "counter": fields["counter"], "issued_at": fields["issued_at"], "valid_for": fields["valid_for"],
                   "cap_minor": cap.minor, "cap_currency": cap.currency.alpha},
        "body_hex": body.hex(),
        "signing_input_hex": qrpay.signing_input(body).hex(),
        "signature_hex": signature.hex(),
        "qr_text": text,
        "qr_text_length": len(text),
    }


if __name__ == "__main__":
    print(json.dumps(vector(), indent=2))
