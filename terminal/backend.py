"""The terminal's client of the wallet backend API (docs/openapi.yaml), on `requests`.

- Every request is signed with the terminal key (`terminal.wire`), has a connect and a read timeout,
  and counts for the circuit breaker. A `stale_timestamp` refusal carries the backend's time: the
  client corrects its signing clock once and signs again.
- TLS is verified (`[backend] ca_file` or the system store); with `[backend] pin_sha256` the server
  certificate's public key must also match a pin, checked right after the handshake, before
  anything is sent.
- Every answer is checked field by field; anything that does not match the contract is a
  `BackendAnswerError` (retried by the sync worker, never taken for an answer).
- The circuit breaker opens after `breaker_failures` consecutive failures; while it is not closed
  the checkout does not ask the backend at all (`BackendAuthorizer.reachable()` is False), and
  after `breaker_reset_ms` the sync worker's next call is the probe that closes it again.

Enrolment data (which backend, its sealing key) is kept in `backend_enrolment.json` in the data
directory, mode 0600, written atomically.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import email.utils
import gzip
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from requests.adapters import HTTPAdapter

from terminal import __version__
from terminal.core.rules import PaymentRequest
from terminal.errors import SecurityError, StorageError, SyncError
from terminal.journal import TxnRow, parse_utc, utc_text
from terminal.payment import OnlineAnswer
from terminal.security import TerminalKeys
from terminal.wire import body_sha256, format_authorization, new_nonce, signing_bytes

log = logging.getLogger("walletpos.backend")

ENROLMENT_FILE = "backend_enrolment.json"
ITEM_STATES = ("accepted", "duplicate", "declined_after_offline", "rejected")
COMPRESS_ABOVE = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_AUTH_CODE = re.compile(r"[A-Z0-9]{6}")


# ------------------------------------------------------------------------------------------------
# Errors


class BackendError(SyncError):
    """Talking to the backend failed. `retryable`: trying again later may work. `answered`: the
    backend itself answered (its own error object, or an answer it sent that cannot be read), as
    opposed to silence: no connection, a timeout, a reset, a gateway's page."""

    retryable = True
    answered = False

    def __init__(self, message: str, *, retry_after_s: float | None = None, title: str | None = None,
                 answered: bool | None = None):
        super().__init__(message, title=title)
        self.retry_after_s = retry_after_s
        if answered is not None:
            self.answered = answered


class BackendUnreachable(BackendError):
    """No usable answer: cannot connect, timeout, reset connection, 5xx, or busy (429/503)."""

    title = "Backend unreachable"


class BackendAnswerError(BackendError):
    """The backend answered something that does not match the contract."""

    title = "Unreadable backend answer"
    answered = True


class CertificatePinMismatch(BackendError):
    """The server's certificate key is not one of the pinned keys: nothing was sent."""

    title = "Backend certificate not trusted"


class BackendRefused(BackendError):
    """The backend refused the request (4xx): retrying the same request will not help."""

    title = "Backend refused"
    retryable = False
    answered = True

    def __init__(self, message: str, *, status: int, code: str):
        super().__init__(message)
        self.status, self.code = status, code


class NotEnrolled(BackendError):
    """This terminal is not enrolled with the configured backend."""

    title = "Terminal not enrolled"
    retryable = False


# ------------------------------------------------------------------------------------------------
# Enrolment data


@dataclass(frozen=True, slots=True)
class Enrolment:
    terminal_id: str
    backend_url: str
    public_key: str  # hex of the terminal's Ed25519 public key
    enrolled_at: str
    sealing_key_id: str
    sealing_public_key: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"terminal_id": self.terminal_id, "backend_url": self.backend_url, "public_key": self.public_key,
                "enrolled_at": self.enrolled_at,
                "sealing_key": {"key_id": self.sealing_key_id, "public_key": self.sealing_public_key.hex()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Enrolment:
        seal = data["sealing_key"]
        key = bytes.fromhex(seal["public_key"])
        if len(key) != 32:
            raise ValueError("the sealing key must be 32 bytes")
        return cls(str(data["terminal_id"]), str(data["backend_url"]), str(data["public_key"]),
                   str(data["enrolled_at"]), str(seal["key_id"]), key)

    @classmethod
    def load(cls, data_dir: Path) -> Enrolment | None:
        path = data_dir / ENROLMENT_FILE
        try:
            mode = path.stat().st_mode & 0o777
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from None
        if mode & 0o077:
            raise SecurityError(f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")
        try:
            return cls.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise SecurityError(f"{path} is damaged ({exc}); enrol the terminal again") from None

    def save(self, data_dir: Path) -> Path:
        """Write atomically with mode 0600 (temporary file, fsync, rename, fsync the directory)."""
        path = data_dir / ENROLMENT_FILE
        fd, tmp = tempfile.mkstemp(prefix=".enrolment-", dir=data_dir)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(data_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StorageError(f"cannot write {path}: {exc.strerror}") from None
        return path


# ------------------------------------------------------------------------------------------------
# Circuit breaker


class CircuitBreaker:
    """closed -> (N consecutive failures) -> open -> (after reset_s) half_open -> success: closed,
    failure: open again. Thread-safe; no IO."""

    def __init__(self, failures: int, reset_s: float, *, monotonic: Callable[[], float] = time.monotonic):
        self.threshold = failures
        self.reset_s = reset_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._monotonic() - self._opened_at >= self.reset_s else "open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allows_checkout(self) -> bool:
        """May a payment ask the backend now? Only when closed: a checkout never probes."""
        with self._lock:
            return self._opened_at is None

    def allows_probe(self) -> bool:
        """May the sync worker call (closed or half-open)?"""
        with self._lock:
            return self._state() != "open"

    def seconds_until_probe(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.reset_s - (self._monotonic() - self._opened_at))

    def record_success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("backend answered again: circuit closed")
            self._failures, self._opened_at = 0, None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            state = self._state()
            if state == "half_open" or (state == "closed" and self._failures >= self.threshold):
                if state == "closed":
                    log.warning("backend failed %d times in a row: circuit open for %.1f s", self._failures,
                                self.reset_s)
                self._opened_at = self._monotonic()

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "consecutive_failures": self._failures,
                "seconds_until_probe": round(self.seconds_until_probe(), 3)}


# ------------------------------------------------------------------------------------------------
# Transport: signing and certificate pinning


class _Signer(requests.auth.AuthBase):
    """Signs the prepared request (the exact path and body bytes that go on the wire)."""

    def __init__(self, keys: TerminalKeys, terminal_id: str, clock_offset_ms: Callable[[], int]):
        self.keys, self.terminal_id, self.offset = keys, terminal_id, clock_offset_ms

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body
        if isinstance(body, str):
            body = body.encode("utf-8")
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
            der = self.sock.getpeercert(binary_form=True) if self.sock is not None else None
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


# ------------------------------------------------------------------------------------------------
# Answers


class _Answer:
    """Field-by-field reading of a backend answer; every mismatch is a BackendAnswerError."""

    def __init__(self, data: Any, what: str):
        if not isinstance(data, dict):
            raise BackendAnswerError(f"{what}: expected a JSON object, got {type(data).__name__}")
        self.data, self.what = data, what

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise BackendAnswerError(f"{self.what}: field {key} is missing")
        return self.data[key]

    def _bad(self, key: str, expected: str) -> BackendAnswerError:
        value = repr(self.data.get(key))[:40]
        return BackendAnswerError(f"{self.what}: field {key} must be {expected}, got {value}")

    def int(self, key: str, minimum: int = 0) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._bad(key, f"a whole number >= {minimum}")
        return value

    def opt_int(self, key: str, minimum: int = 0) -> int | None:
        return None if self._get(key) is None else self.int(key, minimum)

    def bool(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def str(self, key: str, pattern: re.Pattern[str] | None = None, choices: Sequence[str] | None = None) -> str:
        value = self._get(key)
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)) \
                or (choices is not None and value not in choices):
            expected = f"one of {', '.join(choices)}" if choices else "text" + (" of the right form" if pattern else "")
            raise self._bad(key, expected)
        return value

    def opt_str(self, key: str, pattern: re.Pattern[str] | None = None,
                choices: Sequence[str] | None = None) -> str | None:
        return None if self._get(key) is None else self.str(key, pattern, choices)

    def time(self, key: str) -> datetime:
        text = self.str(key)
        try:
            return parse_utc(text.replace("Z", "+00:00"))
        except ValueError:
            raise self._bad(key, "a UTC timestamp") from None

    def opt_time(self, key: str) -> datetime | None:
        return None if self._get(key) is None else self.time(key)

    def list(self, key: str) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return value

    def obj(self, key: str) -> _Answer:
        return _Answer(self._get(key), f"{self.what} {key}")


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    server_time: datetime
    clock_skew_ms: int | None
    deny_list_version: int
    config_version: int
    issuer_keys_version: int
    sealing_key_id: str


@dataclass(frozen=True, slots=True)
class ItemResult:
    id: str
    seq: int
    status: str
    reason: str | None
    original_status: str | None


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    results: tuple[ItemResult, ...]
    highest_contiguous_seq: int
    gaps: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class AuthorisationAnswer:
    id: str
    approved: bool
    reason: str | None
    auth_code: str | None


@dataclass(frozen=True, slots=True)
class PaymentStatus:
    reference: str
    status: str  # pending | paid | cancelled
    amount: int | None
    currency: str | None
    paid_at: datetime | None
    card_token: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "status": self.status, "amount": self.amount,
                "currency": self.currency, "paid_at": utc_text(self.paid_at) if self.paid_at else None,
                "card_token": self.card_token}


@dataclass(frozen=True, slots=True)
class DenyDelta:
    version: int
    latest_version: int
    has_more: bool
    reset: bool
    added: tuple[tuple[str, str], ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TerminalLimits:
    version: int
    currency: str
    limits: Mapping[str, int | None]


LIMIT_NAMES = ("floor_limit", "cvm_required_limit", "contactless_transaction_limit", "offline_max_payment",
               "card_daily_amount", "card_daily_count", "exposure_cap", "max_hours_since_sync")


def _plain(value: Any, depth: int = 0) -> Any:
    """Keep only what the contract's PlainValue allows (str/int/bool/None, lists, string-keyed objects)."""
    if depth > 8:
        return None
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return value[:1024]
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in list(value)[:64]]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in list(value.items())[:64]}
    return str(value)[:1024]


# ------------------------------------------------------------------------------------------------
# The client


class BackendClient:
    """One terminal's connection to its backend; safe to use from several threads (one requests
    session per thread)."""

    def __init__(self, config: Any, data_dir: Path, keys: TerminalKeys, *,
                 monotonic: Callable[[], float] = time.monotonic):
        self.config = config
        self.cfg = config.backend
        self.base_url = self.cfg.url.rstrip("/")
        self.terminal_id: str = config.terminal.id
        self.data_dir = data_dir
        self.keys = keys
        self.compress = config.sync.compress
        self.breaker = CircuitBreaker(self.cfg.breaker_failures, self.cfg.breaker_reset_ms / 1000, monotonic=monotonic)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._offset_ms = 0  # backend clock minus ours, learnt from stale_timestamp refusals
        self.requests_made = 0
        self._enrolment: Enrolment | None = None
        self._enrolment_problem: str | None = None
        self.reload_enrolment()

    # -- enrolment --------------------------------------------------------------------------------

    def reload_enrolment(self) -> None:
        try:
            enrolment = Enrolment.load(self.data_dir)
        except (SecurityError, StorageError) as exc:
            self._enrolment, self._enrolment_problem = None, exc.message
            return
        if enrolment is not None and enrolment.backend_url.rstrip("/") != self.base_url:
            self._enrolment = None
            self._enrolment_problem = (f"enrolled with {enrolment.backend_url}, but [backend] url is {self.base_url}; "
                                       "enrol with this backend (walletpos backend enrol --token T)")
            return
        if enrolment is not None and enrolment.public_key != self.keys.public_key_bytes.hex():
            self._enrolment = None
            self._enrolment_problem = "the enrolment was made with another terminal key; enrol again"
            return
        self._enrolment = enrolment
        self._enrolment_problem = None if enrolment else (
            "this terminal is not enrolled with the backend; run walletpos backend enrol --token T")

    @property
    def enrolment(self) -> Enrolment | None:
        return self._enrolment

    @property
    def enrolled(self) -> bool:
        return self._enrolment is not None

    @property
    def enrolment_problem(self) -> str | None:
        return self._enrolment_problem

    def enrol(self, token: str) -> Enrolment:
        body = {"terminal_id": self.terminal_id, "public_key": self.keys.public_key_bytes.hex(),
                "enrolment_token": token, "software_version": __version__}
        data = self._call("POST", "/v1/enrolment", body=body, enrolling=True)
        with self._reading():
            answer = _Answer(data, "enrolment answer")
            seal = answer.obj("sealing_key")
            enrolment = Enrolment(
                terminal_id=answer.str("terminal_id"), backend_url=self.base_url,
                public_key=self.keys.public_key_bytes.hex(), enrolled_at=answer.str("enrolled_at"),
                sealing_key_id=seal.str("key_id", _KEY_ID),
                sealing_public_key=bytes.fromhex(seal.str("public_key", _HEX64)),
            )
            if enrolment.terminal_id != self.terminal_id:
                raise BackendAnswerError(f"enrolment answer names terminal {enrolment.terminal_id}, "
                                         f"not {self.terminal_id}")
        enrolment.save(self.data_dir)
        self.reload_enrolment()
        return enrolment

    def update_sealing_key(self, key_id: str, public_key: bytes) -> None:
        if self._enrolment is None:
            return
        updated = Enrolment(self._enrolment.terminal_id, self._enrolment.backend_url, self._enrolment.public_key,
                            self._enrolment.enrolled_at, key_id, public_key)
        updated.save(self.data_dir)
        self._enrolment = updated

    # -- transport --------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = signing_session(self.keys, self.terminal_id, clock_offset_ms=lambda: self._offset_ms,
                                      ca_file=self.cfg.ca_file, pins=self.cfg.pin_sha256)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()

    def timeouts(self, read_ms: int | None = None) -> tuple[float, float]:
        read = (read_ms if read_ms is not None else self.cfg.request_timeout_ms) / 1000
        return min(self.cfg.connect_timeout_ms / 1000, read), read

    def _call(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None,
              timeout_ms: int | None = None, enrolling: bool = False, compress: bool = False) -> Any:
        if not enrolling and self._enrolment is None:
            raise NotEnrolled(self._enrolment_problem or "this terminal is not enrolled with the backend")
        data = headers = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers = {"Content-Type": "application/json"}
            if compress and self.compress and len(data) > COMPRESS_ABOVE:
                data = gzip.compress(data, compresslevel=1, mtime=0)
                headers["Content-Encoding"] = "gzip"
        for attempt in (1, 2):
            response = self._send(method, path, data, headers, params, timeout_ms)
            try:
                return self._read(response, method, path)
            except _ClockCorrected:
                if attempt == 2:
                    self.breaker.record_failure()
                    raise BackendRefused("the backend keeps refusing the request time; check the terminal clock",
                                         status=401, code="stale_timestamp") from None
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, data: bytes | None, headers: dict[str, str] | None,
              params: Mapping[str, Any] | None, timeout_ms: int | None) -> requests.Response:
        with self._lock:
            self.requests_made += 1
        what = f"{method} {path}"
        try:
            return self._session().request(method, self.base_url + path, data=data, headers=headers, params=params,
                                           timeout=self.timeouts(timeout_ms), allow_redirects=False)
        except CertificatePinMismatch:
            self.breaker.record_failure()
            raise
        except requests.exceptions.SSLError as exc:
            self.breaker.record_failure()
            raise BackendUnreachable(f"{what}: the backend's TLS certificate is not trusted ({_short(exc)})",
                                     title="Backend certificate not trusted") from None
        except requests.Timeout:
            self.breaker.record_failure()
            raise BackendUnreachable(f"{what}: no answer within {self.timeouts(timeout_ms)[1]:.3g} s") from None
        except requests.ConnectionError as exc:
            self.breaker.record_failure()
            raise BackendUnreachable(f"{what}: connection failed ({_short(exc)})") from None
        except requests.RequestException as exc:
            self.breaker.record_failure()
            raise BackendUnreachable(f"{what}: {_short(exc)}") from None

    def _read(self, response: requests.Response, method: str, path: str) -> Any:
        what = f"{method} {path}"
        status = response.status_code
        try:
            content = response.content  # the whole body, within the read timeout
        except requests.RequestException as exc:
            self.breaker.record_failure()
            raise BackendUnreachable(f"{what}: the answer was cut off ({_short(exc)})") from None
        data: Any = None
        parse_problem = None
        if (response.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            parse_problem = f"answer is {response.headers.get('Content-Type') or 'untyped'}, not JSON"
        else:
            try:
                data = json.loads(content.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                parse_problem = f"answer is not JSON ({_short(exc)})"
        if 200 <= status < 300:
            if parse_problem:
                self.breaker.record_failure()
                raise BackendAnswerError(f"{what}: {parse_problem}")
            return data
        error = data if isinstance(data, dict) else {}
        code = str(error.get("error") or "") or f"http_{status}"
        message = str(error.get("message") or response.reason or "")[:300]
        if status in (429, 503) or status >= 500:
            self.breaker.record_failure()
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise BackendUnreachable(f"{what}: backend answered {status} {code}: {message}", retry_after_s=retry_after,
                                     answered=bool(error.get("error")))  # its own error object, not a gateway's
        self.breaker.record_success()  # a considered refusal: the backend is up
        if status == 401 and code == "stale_timestamp" and isinstance(error.get("server_time"), str):
            try:
                server = parse_utc(error["server_time"].replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                self._offset_ms = int((server - datetime.now(UTC)).total_seconds() * 1000)
                log.warning("terminal clock differs from the backend's by %d ms; signing with the backend's time",
                            -self._offset_ms)
                raise _ClockCorrected
        if status == 401 and code == "unknown_terminal":
            raise NotEnrolled(f"the backend does not know this terminal ({message})")
        raise BackendRefused(f"{what}: backend refused ({status} {code}): {message}", status=status, code=code)

    # -- the operations of docs/openapi.yaml ------------------------------------------------------

    def heartbeat(self, *, queue_depth: int, oldest_pending_at: str | None, last_sync_ok_at: str | None,
                  deny_list_version: int, config_version: int, issuer_keys_version: int) -> HeartbeatAnswer:
        body = {"terminal_id": self.terminal_id, "terminal_time": utc_text(datetime.now(UTC)),
                "queue_depth": queue_depth, "oldest_pending_at": oldest_pending_at, "last_sync_ok_at": last_sync_ok_at,
                "software_version": __version__, "deny_list_version": deny_list_version,
                "config_version": config_version, "issuer_keys_version": issuer_keys_version,
                "breaker_state": self.breaker.state}
        data = self._call("POST", "/v1/heartbeat", body=body)
        with self._reading():
            a = _Answer(data, "heartbeat answer")
            return HeartbeatAnswer(a.time("server_time"), a.opt_int("clock_skew_ms", minimum=-(2**62)),
                                   a.int("deny_list_version"), a.int("config_version"), a.int("issuer_keys_version"),
                                   a.str("sealing_key_id"))

    def upload(self, rows: Sequence[TxnRow]) -> BatchAnswer:
        records = []
        for row in rows:
            record = row.signed_record()
            record["row_hash"], record["signature"] = row.row_hash, row.signature
            records.append(record)
        data = self._call("POST", "/v1/transactions/batches", body={"terminal_id": self.terminal_id,
                                                                    "records": records}, compress=True)
        with self._reading():
            return self._batch_answer(rows, data)

    def _batch_answer(self, rows: Sequence[TxnRow], data: Any) -> BatchAnswer:
        a = _Answer(data, "upload answer")
        results = a.list("results")
        if len(results) != len(rows):
            raise BackendAnswerError(f"upload answer: {len(results)} results for {len(rows)} rows")
        parsed = []
        for row, item in zip(rows, results, strict=True):
            r = _Answer(item, f"upload answer for row {row.seq}")
            result = ItemResult(r.str("id"), r.int("seq", 1), r.str("status", choices=ITEM_STATES),
                                r.opt_str("reason"), r.opt_str("original_status",
                                                               choices=("accepted", "declined_after_offline")))
            if result.id != row.id or result.seq != row.seq:
                raise BackendAnswerError(f"upload answer: result {result.id}/{result.seq} does not match row "
                                         f"{row.id}/{row.seq}")
            parsed.append(result)
        gaps = []
        for gap in a.list("gaps"):
            g = _Answer(gap, "upload answer gap")
            gaps.append((g.int("first", 1), g.int("last", 1)))
        return BatchAnswer(tuple(parsed), a.int("highest_contiguous_seq"), tuple(gaps))

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Around the reading of an answer: a contract mismatch counts as a failure, a good answer as
        a success of the backend (for the circuit breaker)."""
        try:
            yield
        except BackendAnswerError:
            self.breaker.record_failure()
            raise
        self.breaker.record_success()

    def authorise(self, request: PaymentRequest, txn_id: str, facts: Mapping[str, Any], *,
                  deadline_ms: int) -> AuthorisationAnswer:
        facts = dict(facts)
        token = request.card_token or facts.pop("card_token", None)
        body = {
            "id": txn_id, "amount": request.amount.minor, "currency": request.amount.currency.alpha,
            "method": request.method.value,
            "card_token": token if isinstance(token, str) and _TOKEN.fullmatch(token) else None,
            "masked_pan": facts.pop("masked_pan", None), "sealed_card": facts.pop("sealed_card", None),
            "scheme": facts.pop("scheme", None),
            "wallet_tier": request.wallet_tier.value if request.wallet_tier else None,
            "cvm_performed": request.cvm_performed, "deadline_ms": deadline_ms,
            "details": _plain({k: v for k, v in facts.items() if v is not None}),
        }
        data = self._call("POST", "/v1/authorisations", body=body, timeout_ms=deadline_ms)
        with self._reading():
            a = _Answer(data, "authorisation answer")
            answer = AuthorisationAnswer(a.str("id"), a.str("status", choices=("approved", "declined")) == "approved",
                                         a.opt_str("reason"), a.opt_str("auth_code", _AUTH_CODE))
            if answer.id != txn_id:
                raise BackendAnswerError(f"authorisation answer is for {answer.id}, not {txn_id}")
            return answer

    def payment_status(self, reference: str) -> PaymentStatus:
        data = self._call("GET", f"/v1/payments/{requests.utils.quote(reference, safe='')}")
        return self._payment_status(data, reference)

    def cancel_payment(self, reference: str, reason: str = "closed_by_cashier") -> PaymentStatus:
        """Close a merchant code at the backend: `cancelled`, or `paid` when the customer paid first."""
        data = self._call("POST", f"/v1/payments/{requests.utils.quote(reference, safe='')}/cancel",
                          body={"reason": reason})
        status = self._payment_status(data, reference)
        if status.status == "pending":
            raise BackendAnswerError(f"cancel of {reference}: the backend says the code is still open")
        return status

    def _payment_status(self, data: Any, reference: str) -> PaymentStatus:
        with self._reading():
            a = _Answer(data, "payment status")
            status = PaymentStatus(a.str("reference"), a.str("status", choices=("pending", "paid", "cancelled")),
                                   a.opt_int("amount"), a.opt_str("currency"), a.opt_time("paid_at"),
                                   a.opt_str("card_token"))
            if status.reference != reference:
                raise BackendAnswerError(f"payment status is for {status.reference}, not {reference}")
            return status

    def deny_delta(self, since: int, limit: int = 5000) -> DenyDelta:
        data = self._call("GET", "/v1/deny-list", params={"since": since, "limit": limit})
        with self._reading():
            return self._deny_answer(data)

    def _deny_answer(self, data: Any) -> DenyDelta:
        a = _Answer(data, "deny-list answer")
        added = []
        for entry in a.list("added"):
            e = _Answer(entry, "deny-list entry")
            added.append((e.str("card_token", _TOKEN), e.str("reason")[:64]))
        removed = []
        for token in a.list("removed"):
            if not isinstance(token, str) or not _TOKEN.fullmatch(token):
                raise BackendAnswerError(f"deny-list answer: removed token {token!r:.40} is not a token")
            removed.append(token)
        return DenyDelta(a.int("version"), a.int("latest_version"), a.bool("has_more"), a.bool("reset"),
                         tuple(added), tuple(removed))

    def terminal_limits(self) -> TerminalLimits:
        data = self._call("GET", "/v1/terminal-config")
        with self._reading():
            a = _Answer(data, "terminal config")
            limits = a.obj("limits")
            values = {name: limits.opt_int(name) for name in LIMIT_NAMES}
            return TerminalLimits(a.int("version"), a.str("currency", re.compile(r"[A-Z]{3}")), values)

    def issuer_keys(self) -> tuple[int, dict[str, bytes]]:
        data = self._call("GET", "/v1/issuer-keys")
        with self._reading():
            a = _Answer(data, "issuer keys")
            keys: dict[str, bytes] = {}
            for item in a.list("keys"):
                k = _Answer(item, "issuer key")
                k.str("algorithm", choices=("Ed25519",))
                keys[k.str("key_id", _KEY_ID)] = bytes.fromhex(k.str("public_key", _HEX64))
            return a.int("version"), keys

    def sealing_key(self) -> tuple[str, bytes]:
        data = self._call("GET", "/v1/sealing-key")
        with self._reading():
            a = _Answer(data, "sealing key")
            a.str("algorithm", choices=("x25519-aesgcm-v1",))
            return a.str("key_id", _KEY_ID), bytes.fromhex(a.str("public_key", _HEX64))


class _ClockCorrected(Exception):
    """Internal: the signing clock was corrected from the backend's time; sign and send again."""


_CAUSES = (
    (re.compile(r"\[Errno -?\d+\] [^'\")]+"), None),
    (re.compile(r"RemoteDisconnected\('([^']+)'"), None),
    (re.compile(r"ConnectionResetError\(\d+, '([^']+)'"), None),
    (re.compile(r"IncompleteRead\(([^)]*)\)"), "the answer was cut off"),
    (re.compile(r"certificate verify failed: ([^(')]+)"), None),
)


def _short(exc: BaseException) -> str:
    """The useful part of a requests/urllib3 error text."""
    text = str(exc)
    for pattern, fixed in _CAUSES:
        match = pattern.search(text)
        if match:
            return fixed or (match.group(1) if match.groups() else match.group(0)).strip()
    return text[:200]


def _retry_after(value: str | None) -> float | None:
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


# ------------------------------------------------------------------------------------------------
# Online authorisation for the payment flow


class BackendAuthorizer:
    """`OnlineAuthorizer` (terminal/payment.py) against the backend, with a hard deadline: the
    call runs in a worker thread and the payment waits at most `deadline_ms` for it; a late answer
    is dropped (the journal record, uploaded later, is what the backend reconciles with)."""

    def __init__(self, client: BackendClient, deadline_ms: int):
        self.client = client
        self.deadline_ms = deadline_ms
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="walletpos-auth")

    def reachable(self) -> bool:
        return self.client.enrolled and self.client.breaker.allows_checkout()

    def authorize(self, request: PaymentRequest, txn_id: str, facts: Mapping[str, Any]) -> OnlineAnswer | None:
        started = time.monotonic()
        future = self._pool.submit(self.client.authorise, request, txn_id, facts, deadline_ms=self.deadline_ms)
        try:
            answer = future.result(timeout=self.deadline_ms / 1000)
        except concurrent.futures.TimeoutError:
            log.warning("online authorisation of %s: no answer within %d ms; the offline answer stands", txn_id,
                        self.deadline_ms)
            return None
        except BackendError as exc:
            log.warning("online authorisation of %s failed after %.0f ms: %s", txn_id,
                        (time.monotonic() - started) * 1000, exc.message)
            return None
        return OnlineAnswer(approved=answer.approved, reason=answer.reason, auth_code=answer.auth_code)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
