"""The request-signing scheme of the wallet backend API (docs/openapi.yaml), shared by the terminal's
client and the sandbox backend so that both sides build exactly the same bytes.

    Authorization: WPOS1-Ed25519 terminal=<id>,ts=<unix ms>,nonce=<nonce>,sig=<hex>

`sig` is the terminal's Ed25519 signature over `signing_bytes(...)`: the scheme name, terminal id,
method, path and query exactly as sent, timestamp, nonce and the SHA-256 of the body bytes as sent,
one per line.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

SCHEME = "WPOS1-Ed25519"
# How far a request's timestamp may be from the backend's clock, and so how long nonces are kept.
MAX_SKEW_S = 300
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

_TERMINAL = re.compile(r"[A-Za-z0-9]{1,8}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TS = re.compile(r"[0-9]{1,16}")
_SIG = re.compile(r"[0-9a-f]{128}")
_PARAMS = "the Authorization parameters must be terminal, ts, nonce and sig, once each"


class AuthorizationFormatError(ValueError):
    """The Authorization header is missing or not of the WPOS1-Ed25519 form."""


@dataclass(frozen=True, slots=True)
class SignedHeader:
    terminal_id: str
    ts_ms: int
    nonce: str
    signature: bytes


def new_nonce() -> str:
    return secrets.token_urlsafe(18)  # 24 characters of [A-Za-z0-9_-]


def body_sha256(body: bytes | None) -> str:
    return hashlib.sha256(body).hexdigest() if body else EMPTY_BODY_SHA256


def signing_bytes(terminal_id: str, method: str, path: str, ts_ms: int, nonce: str, body_hash: str) -> bytes:
    """What the terminal signs for one request."""
    return "\n".join((SCHEME, terminal_id, method.upper(), path, str(ts_ms), nonce, body_hash)).encode("utf-8")


def format_authorization(terminal_id: str, ts_ms: int, nonce: str, signature: bytes) -> str:
    return f"{SCHEME} terminal={terminal_id},ts={ts_ms},nonce={nonce},sig={signature.hex()}"


def parse_authorization(value: str | None) -> SignedHeader:
    """Parse an Authorization header; raises AuthorizationFormatError naming what is wrong."""
    if not value:
        raise AuthorizationFormatError("the request is not signed (no Authorization header)")
    scheme, _, params = value.strip().partition(" ")
    if scheme != SCHEME:
        raise AuthorizationFormatError(f"the Authorization scheme must be {SCHEME}")
    fields: dict[str, str] = {}
    for part in params.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep or key in fields:
            raise AuthorizationFormatError(_PARAMS)
        fields[key] = val
    if set(fields) != {"terminal", "ts", "nonce", "sig"}:
        raise AuthorizationFormatError(_PARAMS)
    checks = ((_TERMINAL, "terminal"), (_TS, "ts"), (_NONCE, "nonce"), (_SIG, "sig"))
    for pattern, key in checks:
        if not pattern.fullmatch(fields[key]):
            raise AuthorizationFormatError(f"the Authorization parameter {key} is malformed")
    return SignedHeader(fields["terminal"], int(fields["ts"]), fields["nonce"], bytes.fromhex(fields["sig"]))
