"""Card tokens, masking, key files and sealing for the backend."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from terminal.errors import SecurityError
from terminal.security import card_token, load_or_create_keys, mask_pan, open_sealed, seal_for_backend


def test_mask_pan():
    assert mask_pan("4761739001010119") == "476173******0119"
    assert mask_pan("6222 0202 0000 1234 567") == "622202*********4567"
    assert mask_pan("374245455400126F") == "374245*****0126"  # F-padded 15-digit Amex
    assert mask_pan("123456789012") == "********9012"
    with pytest.raises(SecurityError, match="8 to 19 digits"):
        mask_pan("12ab")


def test_card_token_is_keyed_and_stable():
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    assert card_token("4761739001010119", k1) == card_token("4761 7390 0101 0119", k1)
    assert card_token("4761739001010119", k1) != card_token("4761739001010119", k2)
    assert len(card_token("4761739001010119", k1)) == 32
    assert "4761739001010119" not in card_token("4761739001010119", k1)


def test_keys_are_private_files_and_stable(tmp_path):
    a = load_or_create_keys(tmp_path / "d")
    b = load_or_create_keys(tmp_path / "d")
    assert a.public_key_bytes == b.public_key_bytes and a.card_token_key == b.card_token_key
    key_file = tmp_path / "d" / "terminal_signing.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key_file.chmod(0o644)
    with pytest.raises(SecurityError, match="readable by others"):
        load_or_create_keys(tmp_path / "d")


def test_seal_round_trip_and_tamper():
    backend = X25519PrivateKey.generate()
    pub = backend.public_key().public_bytes_raw()
    sealed = seal_for_backend(pub, b'{"pan":"4761739001010119"}')
    assert sealed.startswith("x25519-aesgcm-v1:") and "4761739001010119" not in sealed
    assert open_sealed(backend.private_bytes_raw(), sealed) == b'{"pan":"4761739001010119"}'
    assert seal_for_backend(pub, b"x") != seal_for_backend(pub, b"x")  # fresh ephemeral key each time
    other = X25519PrivateKey.generate().private_bytes_raw()
    with pytest.raises(SecurityError, match="does not open with this key"):
        open_sealed(other, sealed)
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(SecurityError):
        open_sealed(backend.private_bytes_raw(), flipped)
    with pytest.raises(SecurityError, match="unknown format"):
        open_sealed(backend.private_bytes_raw(), "plain text")
