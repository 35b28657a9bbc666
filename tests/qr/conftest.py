"""Fixtures of the QR tests: an issuer key, a service that trusts it, and code makers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terminal.core import qrpay
from terminal.core.money import Money, currency
from terminal.core.rules import WalletTier
from tests.vectors import vector_items

CNY = currency("CNY")
ISSUER_SEED = bytes(range(32))  # test issuer key: public knowledge, used in tests only


def vectors(kind: str) -> list[tuple[int, dict]]:
    """(index, item) of the shared vectors of `kind` (tests/vectors.py); [] when they are missing."""
    return vector_items(kind)


@pytest.fixture(scope="session")
def issuer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(ISSUER_SEED)


def issuer_public_hex() -> str:
    return Ed25519PrivateKey.from_private_bytes(ISSUER_SEED).public_key().public_bytes_raw().hex()


def make_code(key: Ed25519PrivateKey, *, issued: datetime, key_id: str = "k1", wallet_id: str = "W100",
              tier: WalletTier = WalletTier.REAL_NAME, counter: int = 1, valid_for: int = 60,
              cap: Money | None = None) -> str:
    body = qrpay.wallet_code_body(key_id=key_id, wallet_id=wallet_id, tier=tier, counter=counter,
                                  issued_at=int(issued.timestamp()), valid_for=valid_for, cap=cap)
    return qrpay.encode_wallet_code(body, key.sign(qrpay.signing_input(body)))


def cpm_text(pan: str = "6212345678901234", expiry: str = "281231") -> str:
    """An EMVCo CPM code (base64 BER-TLV) with a UnionPay application."""
    import base64

    app = (bytes.fromhex("4F08A000000333010102") + b"\x50\x0aUnionPay Q" + bytes.fromhex("5A08") + bytes.fromhex(pan)
           + bytes.fromhex("5F2403") + bytes.fromhex(expiry) + bytes.fromhex("9F26081122334455667788")
           + bytes.fromhex("9F2701809F360200079F370412345678"))
    return base64.b64encode(b"\x85\x05CPV01\x61" + bytes([len(app)]) + app).decode()


@pytest.fixture
def qr_config(tmp_path: Path) -> Path:
    path = tmp_path / "terminal.toml"
    path.write_text(f'[qr]\nissuer_keys = ["k1:{issuer_public_hex()}"]\n', encoding="utf-8")
    return path


@pytest.fixture
def qr_service(data_dir: Path, clock, qr_config: Path) -> Iterator:
    from terminal.bootstrap import bootstrap

    svc = bootstrap(config_path=qr_config, data_dir=data_dir, clock=clock, env={})
    yield svc
    svc.close()
