"""Signed wallet codes: the documented test vector, and every reason a code is refused offline."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terminal.core import qrpay
from terminal.core.money import Money, currency
from terminal.core.rules import WalletTier
from terminal.errors import QrPayloadError
from tests.qr.conftest import CNY, make_code

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_documented_vector_is_what_the_script_makes_and_verifies():
    stored = json.loads((ROOT / "docs" / "wallet-code-vector.json").read_text())
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_wallet_code_vector.py")],
                          capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(made.stdout) == stored
    code = qrpay.parse_wallet_code(stored["qr_text"])
    f = stored["fields"]
    assert (code.key_id, code.wallet_id, code.tier.value, code.counter, code.issued_at, code.valid_for) == (
        f["key_id"], f["wallet_id"], f["tier"], f["counter"], f["issued_at"], f["valid_for"])
    assert code.cap == Money(f["cap_minor"], currency(f["cap_currency"]))
    assert code.signed_bytes.hex() == stored["body_hex"] and code.signature.hex() == stored["signature_hex"]
    at = datetime.fromtimestamp(f["issued_at"] + 10, UTC)
    keys = {f["key_id"]: bytes.fromhex(stored["issuer_public_key_hex"])}
    verified = qrpay.verify_wallet_code(code, now=at, issuer_keys=keys, amount=Money(15000, CNY))
    assert verified.expires == datetime.fromtimestamp(f["issued_at"] + 60, UTC)
    assert stored["qr_text"].startswith("WP1:") and len(stored["qr_text"]) == stored["qr_text_length"]


def reason(code_text: str, *, now: datetime = NOW, keys: dict | None = None, amount: Money | None = None,
           issuer: Ed25519PrivateKey | None = None) -> str:
    try:
        code = qrpay.parse_wallet_code(code_text)
        qrpay.verify_wallet_code(code, now=now, issuer_keys=keys or {}, amount=amount)
    except QrPayloadError as exc:
        return exc.reason
    return "accepted"


def test_each_refusal_has_its_own_reason(issuer):
    keys = {"k1": issuer.public_key().public_bytes_raw()}
    good = make_code(issuer, issued=NOW - timedelta(seconds=10), cap=Money(5000, CNY))
    assert reason(good, keys=keys, amount=Money(5000, CNY)) == "accepted"
    assert reason(good, keys={}) == "unknown_issuer_key"
    other = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    assert reason(good, keys={"k1": other.public_key().public_bytes_raw()}) == "bad_signature"
    assert reason(make_code(other, issued=NOW), keys=keys) == "bad_signature"  # forged with another key
    assert reason(good, keys=keys, now=NOW + timedelta(seconds=50 + 31)) == "code_expired"
    assert reason(good, keys=keys, now=NOW + timedelta(seconds=50 + 29)) == "accepted"  # within clock skew
    assert reason(make_code(issuer, issued=NOW + timedelta(minutes=5)), keys=keys) == "code_not_yet_valid"
    assert reason(good, keys=keys, amount=Money(5001, CNY)) == "code_cap_exceeded"
    assert reason(good, keys=keys, amount=Money(100, currency("USD"))) == "code_cap_currency_mismatch"


def test_altered_codes_are_refused(issuer):
    import base45

    keys = {"k1": issuer.public_key().public_bytes_raw()}
    text = make_code(issuer, issued=NOW, wallet_id="W42", tier=WalletTier.UNVERIFIED)
    raw = bytearray(base45.b45decode(text[4:]))
    for position in range(len(raw)):
        changed = bytearray(raw)
        changed[position] ^= 0x01
        got = reason("WP1:" + base45.b45encode(bytes(changed)).decode(), keys=keys)
        assert got in ("bad_signature", "malformed_wallet_code", "unknown_issuer_key", "unsupported_code_version",
                       "code_expired", "code_not_yet_valid"), (position, got)
        assert got != "accepted"
    assert reason(text + "00", keys=keys) == "malformed_wallet_code"
    assert reason(text[:-3], keys=keys) == "malformed_wallet_code"
    assert reason("WP1:" + text[4:].lower(), keys=keys) == "malformed_wallet_code"
    assert reason(text + "\n", keys=keys) == "control_character"


@pytest.mark.parametrize("field,value", [("counter", 2**32), ("valid_for", 0), ("wallet_id", "bad id!"),
                                         ("key_id", "x" * 33)])
def test_body_builder_refuses_what_does_not_fit(field, value):
    args = {"key_id": "k1", "wallet_id": "W1", "tier": WalletTier.REAL_NAME, "counter": 1, "issued_at": 0,
            "valid_for": 60, field: value}
    with pytest.raises(QrPayloadError) as info:
        qrpay.wallet_code_body(**args)
    assert info.value.reason == "malformed_wallet_code"
