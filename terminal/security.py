"""Terminal secrets and what is done with them.

Secrets never live in config: they are files in the data directory, created on first run with
0600 permissions (the directory itself 0700):
- `terminal_signing.key`  Ed25519 private key that signs every journal row (raw 32 bytes);
- `card_token.key`        HMAC-SHA256 key turning a PAN into a card token (32 random bytes).

A card token is what the journal, velocity checks and deny lists use instead of the card number;
the masked PAN (first 6, last 4) is what people see.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl._sodium import ffi as _sodium_ffi
from nacl._sodium import lib as _sodium

from terminal.errors import SecurityError, StorageError

SIGNING_KEY_FILE = "terminal_signing.key"
CARD_TOKEN_KEY_FILE = "card_token.key"


def ensure_private_dir(path: Path) -> Path:
    """Create the data directory (0700) if needed; refuse a path that is not a directory, and one that
    others may write to (anyone who can write there can replace the journal or the keys)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise StorageError(f"data directory {path} exists but is not a directory") from None
    except OSError as exc:
        raise StorageError(f"cannot create data directory {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise StorageError(f"data directory {path} is not a directory")
    check_not_writable_by_others(path)
    return path


def check_not_writable_by_others(path: Path) -> None:
    """Refuse a file or directory that another user may write to (group or world writable)."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o022:
        raise SecurityError(f"{path} may be written by other users (mode {mode:o}): anyone who can write there can "
                            f"replace the journal or the keys; run `chmod go-w {path}` and start again")


def _create_secret(path: Path, make: bytes) -> bytes:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, make)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails when another process linked its secret first: theirs is used
    except FileExistsError:
        return _read_or_create_secret(path, make)
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return make


def _read_or_create_secret(path: Path, make: bytes) -> bytes:
    """Return the secret in `path`, creating it with `make` (mode 0600) when absent. The file appears
    whole or not at all: it is written under a temporary name and linked into place, so a second
    process starting at the same moment reads either nothing (and links its own, which loses) or
    the whole secret, never a half-written one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _create_secret(path, make)
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror}") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SecurityError(
            f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}` and start again"
        )
    return data


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class TerminalKeys:
    signing_key: Ed25519PrivateKey
    card_token_key: bytes
    # The same key in libsodium's form (seed || public key). Signing goes through libsodium: every
    # journal append signs a row, and libsodium does it in about 60 % of the time OpenSSL takes
    # through `cryptography` (scripts/bench_journal.py). Ed25519 is deterministic, so both give the
    # same signature bytes (tests/unit/test_journal_format.py checks it, from many threads too).
    # `sign` calls libsodium's `crypto_sign` through PyNaCl's cffi module (`nacl._sodium`, private
    # but unchanged since PyNaCl 1.0) into a buffer made once, under a lock: PyNaCl's public wrapper
    # allocates two cffi objects and copies the message back on every call, which measured about a
    # fifth of the signature's time right after a commit's fsync.
    _sodium_key: bytes = field(init=False, repr=False, compare=False)
    # HMAC key of the journal's own state (its head and counters, per-card day totals, the deny list
    # digest): derived from the signing key, so it is exactly as secret as the key that signs rows.
    state_mac_key: bytes = field(init=False, repr=False, compare=False)
    _sign_buffer: object = field(init=False, repr=False, compare=False)
    _sign_lock: threading.Lock = field(init=False, repr=False, compare=False)

    _BUFFERED = 64  # messages up to this size (journal digests are 32 bytes) use the buffer

    def __post_init__(self) -> None:
        seed = self.signing_key.private_bytes_raw()
        object.__setattr__(self, "_sodium_key", seed + self.signing_key.public_key().public_bytes_raw())
        object.__setattr__(self, "_sign_buffer", _sodium_ffi.new("unsigned char[]", 64 + self._BUFFERED))
        object.__setattr__(self, "_sign_lock", threading.Lock())
        object.__setattr__(self, "state_mac_key", HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                                       info=b"walletpos journal state mac v1").derive(seed))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def public_key_bytes(self) -> bytes:
        return self.public_key.public_bytes_raw()

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature (64 bytes) of `data`, as RFC 8032 defines it."""
        size = len(data)
        with self._sign_lock:
            out = self._sign_buffer if size <= self._BUFFERED else _sodium_ffi.new("unsigned char[]", 64 + size)
            if _sodium.crypto_sign(out, _sodium_ffi.NULL, data, size, self._sodium_key) != 0:
                raise SecurityError("libsodium could not sign")
            return _sodium_ffi.buffer(out, 64)[:]

    def card_token(self, pan: str) -> str:
        return card_token(pan, self.card_token_key)

    def wallet_token(self, wallet_id: str) -> str:
        return wallet_token(wallet_id, self.card_token_key)


def load_keys(data_dir: Path) -> TerminalKeys | None:
    """The terminal's keys if they exist (nothing is created: for read-only checks); None when not."""
    signing, token = data_dir / SIGNING_KEY_FILE, data_dir / CARD_TOKEN_KEY_FILE
    if not signing.exists() or not token.exists():
        return None
    return load_or_create_keys(data_dir, create=False)


def load_or_create_keys(data_dir: Path, *, create: bool = True) -> TerminalKeys:
    if create:
        ensure_private_dir(data_dir)
    raw = _read_or_create_secret(
        data_dir / SIGNING_KEY_FILE, Ed25519PrivateKey.generate().private_bytes_raw()
    )
    if len(raw) != 32:
        raise SecurityError(f"{data_dir / SIGNING_KEY_FILE} is damaged (expected 32 bytes, found {len(raw)})")
    token_key = _read_or_create_secret(data_dir / CARD_TOKEN_KEY_FILE, secrets.token_bytes(32))
    if len(token_key) != 32:
        raise SecurityError(f"{data_dir / CARD_TOKEN_KEY_FILE} is damaged (expected 32 bytes)")
    return TerminalKeys(Ed25519PrivateKey.from_private_bytes(raw), token_key)


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


# ------------------------------------------------------------------------------------------------
# Sealing card data for the backend
#
# Whatever the backend needs in full (PAN, track 2 equivalent, cryptogram inputs) is sealed to the
# backend's X25519 public key, so the terminal itself cannot read it back:
#   ephemeral X25519 key pair -> shared secret with the backend key -> HKDF-SHA256
#   (salt = ephemeral public || backend public, info = SEAL_INFO) -> 32-byte AES-256-GCM key;
#   text = "x25519-aesgcm-v1:" + base64url(ephemeral public (32) || nonce (12) || ciphertext+tag).

SEAL_PREFIX = "x25519-aesgcm-v1:"
SEAL_INFO = b"walletpos sealed card data v1"


def _seal_key(shared: bytes, ephemeral_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_pub + recipient_pub, info=SEAL_INFO).derive(shared)


def seal_for_backend(recipient_public_key: bytes, payload: bytes) -> str:
    """Encrypt `payload` so that only the holder of the backend's X25519 private key can read it."""
    if len(recipient_public_key) != 32:
        raise SecurityError("the backend sealing key must be a 32-byte X25519 public key")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_pub = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public_key))
    nonce = secrets.token_bytes(12)
    box = AESGCM(_seal_key(shared, ephemeral_pub, recipient_public_key)).encrypt(nonce, payload, SEAL_INFO)
    return SEAL_PREFIX + base64.urlsafe_b64encode(ephemeral_pub + nonce + box).decode("ascii")


def open_sealed(recipient_private_key: bytes, text: str) -> bytes:
    """The backend's side of `seal_for_backend` (used by the sandbox backend and tests)."""
    if not text.startswith(SEAL_PREFIX):
        raise SecurityError("not sealed card data (unknown format)")
    try:
        raw = base64.urlsafe_b64decode(text[len(SEAL_PREFIX):].encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise SecurityError("sealed card data is not valid base64") from None
    if len(raw) < 32 + 12 + 16:
        raise SecurityError("sealed card data is truncated")
    private = X25519PrivateKey.from_private_bytes(recipient_private_key)
    ephemeral_pub, nonce, box = raw[:32], raw[32:44], raw[44:]
    shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_pub))
    key = _seal_key(shared, ephemeral_pub, private.public_key().public_bytes_raw())
    try:
        return AESGCM(key).decrypt(nonce, box, SEAL_INFO)
    except InvalidTag:
        raise SecurityError("sealed card data does not open with this key (wrong key or altered)") from None


def _pan_digits(pan: str) -> str:
    digits = pan.replace(" ", "").upper().rstrip("F")
    if not digits.isdigit() or not 8 <= len(digits) <= 19:
        raise SecurityError("a card number must be 8 to 19 digits")
    return digits


def card_token(pan: str, key: bytes) -> str:
    """Keyed token of a card number: HMAC-SHA256 over its digits, 32 hex characters."""
    digest = hmac.new(key, _pan_digits(pan).encode(), hashlib.sha256).hexdigest()
    return digest[:32]


def wallet_token(wallet_id: str, key: bytes) -> str:
    """Keyed token of a wallet id (the payer of a wallet code), same form as a card token and never
    equal to one: HMAC-SHA256 over "wallet:" + the id, 32 hex characters."""
    if not wallet_id or len(wallet_id) > 64:
        raise SecurityError("a wallet id is 1 to 64 characters")
    return hmac.new(key, b"wallet:" + wallet_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def mask_pan(pan: str) -> str:
    """First six and last four digits, the rest as '*' (fewer shown for short numbers)."""
    digits = _pan_digits(pan)
    if len(digits) < 13:
        return "*" * (len(digits) - 4) + digits[-4:]
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]
