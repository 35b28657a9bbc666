"""The signed HTTP session: every request signed with the terminal key (`terminal.wire`), TLS
verified against `[backend] ca_file` (or certifi's CAs) and, with `[backend] pin_sha256`, the
server certificate's public key checked right after the handshake, before anything is sent. Also
the reading of transport failures and of Retry-After."""

from __future__ import annotations

import email.utils
import hashlib
import re
import ssl
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from requests.adapters import HTTPAdapter

from terminal import __version__
from terminal.backend.errors import CertificatePinMismatch
from terminal.security import TerminalKeys
from terminal.wire import body_sha256, format_authorization, new_nonce, signing_bytes


class _Signer(requests.auth.AuthBase):
    """Signs the prepared request (the exact path and body bytes that go on the wire)."""

    def __init__(self, keys: TerminalKeys, terminal_id: str, clock_offset_ms: Callable[[], int]):
        self.keys, self.terminal_id, self.offset = keys, terminal_id, clock_offset_ms

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None and not isinstance(body, bytes):  # requests gives bytes for every body walletpos sends
            raise TypeError("signed requests need a body in memory")
        ts = int(time.time() * 1000) + self.offset()
        nonce = new_nonce()
        message = signing_bytes(self.terminal_id, r.method or "GET", r.path_url, ts, nonce, body_sha256(body))
        r.headers["Authorization"] = format_authorization(self.terminal_id, ts, nonce, self.keys.sign(message))
        return r


def signing_session(keys: TerminalKeys, terminal_id: str, *, clock_offset_ms: Callable[[], int] = lambda: 0,
                    ca_file: str = "", pins: Sequence[str] = ()) -> requests.Session:
    """A requests session that signs every request as `terminal_id`, verifies TLS against `ca_file`
    (or certifi's CAs) and, with `pins`, checks the server key. Proxies, netrc and CA settings from
    the environment are ignored: the backend connection is configured in walletpos config only."""
    session = requests.Session()
    session.trust_env = False
    session.auth = _Signer(keys, terminal_id, clock_offset_ms)
    session.verify = ca_file or True
    session.headers.update({"User-Agent": f"walletpos/{__version__}", "Accept": "application/json"})
    if pins:
        session.mount("https://", _PinningAdapter(pins))
    return session


def spki_sha256(cert_der: bytes) -> str:
    """SHA-256 (hex) of a DER certificate's SubjectPublicKeyInfo: what `[backend] pin_sha256` lists."""
    key = x509.load_der_x509_certificate(cert_der).public_key()
    return hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def _pinned_pool(pins: frozenset[str]) -> type[urllib3.HTTPSConnectionPool]:
    class PinnedConnection(urllib3.connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sock = self.sock
            der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
            digest = spki_sha256(der) if der else None
            if digest not in pins:
                self.close()
                raise CertificatePinMismatch(
                    f"the backend at {self.host} presented a certificate whose key (sha256 {digest}) is not "
                    "pinned in [backend] pin_sha256; nothing was sent (check the pin or the network)")

    class PinnedPool(urllib3.HTTPSConnectionPool):
        ConnectionCls = PinnedConnection

    return PinnedPool


class _PinningAdapter(HTTPAdapter):
    def __init__(self, pins: Sequence[str]):
        self._pool_class = _pinned_pool(frozenset(pins))
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme,
                                                   "https": self._pool_class}


_CAUSES = (
    (re.compile(r"\[Errno -?\d+\] [^'\")]+"), None),
    (re.compile(r"RemoteDisconnected\('([^']+)'"), None),
    (re.compile(r"ConnectionResetError\(\d+, '([^']+)'"), None),
    (re.compile(r"IncompleteRead\(([^)]*)\)"), "the answer was cut off"),
    (re.compile(r"certificate verify failed: ([^(')]+)"), None),
)


def short_error(exc: BaseException) -> str:
    """The useful part of a requests/urllib3 error text."""
    text = str(exc)
    for pattern, fixed in _CAUSES:
        match = pattern.search(text)
        if match:
            return fixed or (match.group(1) if match.groups() else match.group(0)).strip()
    return text[:200]


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


__all__ = ["retry_after_seconds", "short_error", "signing_session", "spki_sha256"]
