"""The terminal's client of the wallet backend API (docs/openapi.yaml), on `requests`: one method per
operation, each answer read by `terminal.backend.answers`. Every call counts for the circuit
breaker; a `stale_timestamp` refusal carries the backend's time, and the client corrects its
signing clock once and signs again."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import requests

from terminal import __version__
from terminal.backend.answers import (
    AUTH_CODE,
    CARD_TOKEN,
    HEX64,
    ITEM_STATES,
    KEY_ID,
    LIMIT_NAMES,
    Answer,
    AuthorisationAnswer,
    BatchAnswer,
    DenyDelta,
    HeartbeatAnswer,
    ItemResult,
    PaymentStatus,
    SupportTicket,
    TerminalLimits,
)
from terminal.backend.breaker import CircuitBreaker
from terminal.backend.enrolment import Enrolment
from terminal.backend.errors import (
    BackendAnswerError,
    BackendRefused,
    BackendUnreachable,
    CertificatePinMismatch,
    NotEnrolled,
)
from terminal.backend.transport import retry_after_seconds, short_error, signing_session
from terminal.core.rules import PaymentRequest
from terminal.errors import SecurityError, StorageError
from terminal.journal import TxnRow, parse_utc, utc_text
from terminal.security import TerminalKeys

log = logging.getLogger("walletpos.backend")

COMPRESS_ABOVE = 1024
SUPPORT_BUNDLE_MAX = 8 * 1024 * 1024  # the contract's limit for one support bundle (zip bytes)
SUPPORT_TICKET = re.compile(r"SB-[0-9A-HJ-NP-Z]{6}")


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
            answer = Answer(data, "enrolment answer")
            seal = answer.obj("sealing_key")
            enrolment = Enrolment(
                terminal_id=answer.str("terminal_id"), backend_url=self.base_url,
                public_key=self.keys.public_key_bytes.hex(), enrolled_at=answer.str("enrolled_at"),
                sealing_key_id=seal.str("key_id", KEY_ID),
                sealing_public_key=bytes.fromhex(seal.str("public_key", HEX64)),
                ack_public_key=bytes.fromhex(answer.str("ack_public_key", HEX64)),
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
                            self._enrolment.enrolled_at, key_id, public_key, self._enrolment.ack_public_key)
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
            raise BackendUnreachable(f"{what}: the backend's TLS certificate is not trusted ({short_error(exc)})",
                                     title="Backend certificate not trusted") from None
        except requests.Timeout:
            self.breaker.record_failure()
            raise BackendUnreachable(f"{what}: no answer within {self.timeouts(timeout_ms)[1]:.3g} s") from None
        except requests.ConnectionError as exc:
            self.breaker.record_failure()
            raise BackendUnreachable(f"{what}: connection failed ({short_error(exc)})") from None
        except requests.RequestException as exc:
            self.breaker.record_failure()
            raise BackendUnreachable(f"{what}: {short_error(exc)}") from None

    def _read(self, response: requests.Response, method: str, path: str) -> Any:
        what = f"{method} {path}"
        status = response.status_code
        try:
            content = response.content  # the whole body, within the read timeout
        except requests.RequestException as exc:
            self.breaker.record_failure()
            raise BackendUnreachable(f"{what}: the answer was cut off ({short_error(exc)})") from None
        data: Any = None
        parse_problem = None
        if (response.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            parse_problem = f"answer is {response.headers.get('Content-Type') or 'untyped'}, not JSON"
        else:
            try:
                data = json.loads(content.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                parse_problem = f"answer is not JSON ({short_error(exc)})"
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
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
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
            a = Answer(data, "heartbeat answer")
            requested = data.get("support_bundle_requested", False)  # optional in the contract
            if not isinstance(requested, bool):
                raise BackendAnswerError("heartbeat answer: field support_bundle_requested must be true or false")
            return HeartbeatAnswer(a.time("server_time"), a.opt_int("clock_skew_ms", minimum=-(2**62)),
                                   a.int("deny_list_version"), a.int("config_version"), a.int("issuer_keys_version"),
                                   a.str("sealing_key_id"), requested)

    def upload_support_bundle(self, bundle: bytes, *, file_name: str, reason: str) -> SupportTicket:
        """Hand a support bundle (zip bytes) to the bank's support; the answer's ticket id is what the
        technician reads out. `reason`: technician, or backend_request (the heartbeat asked)."""
        if len(bundle) > SUPPORT_BUNDLE_MAX:
            raise BackendRefused(f"the support bundle is {len(bundle) // 1024} KiB, more than the "
                                 f"{SUPPORT_BUNDLE_MAX // 1024 // 1024} MiB the backend takes; write it to a drive "
                                 "instead", status=413, code="too_large")
        digest = hashlib.sha256(bundle).hexdigest()
        body = {"terminal_id": self.terminal_id, "reason": reason, "file_name": file_name, "sha256": digest,
                "bundle": base64.b64encode(bundle).decode("ascii")}
        data = self._call("POST", "/v1/support-bundles", body=body, timeout_ms=max(self.cfg.request_timeout_ms, 30_000))
        with self._reading():
            a = Answer(data, "support bundle receipt")
            ticket = SupportTicket(a.str("ticket", SUPPORT_TICKET), a.time("received_at"), a.int("size"),
                                   a.str("sha256", HEX64))
            if ticket.sha256 != digest or ticket.size != len(bundle):
                raise BackendAnswerError("support bundle receipt: the backend received other bytes than were sent")
            return ticket

    def upload(self, rows: Sequence[TxnRow]) -> BatchAnswer:
        records = []
        for row in rows:
            record = row.upload_record()
            record["row_hash"], record["signature"] = row.row_hash, row.signature
            records.append(record)
        data = self._call("POST", "/v1/transactions/batches", body={"terminal_id": self.terminal_id,
                                                                    "records": records}, compress=True)
        with self._reading():
            return self._batch_answer(rows, data)

    def _batch_answer(self, rows: Sequence[TxnRow], data: Any) -> BatchAnswer:
        a = Answer(data, "upload answer")
        results = a.list("results")
        if len(results) != len(rows):
            raise BackendAnswerError(f"upload answer: {len(results)} results for {len(rows)} rows")
        parsed = []
        for row, item in zip(rows, results, strict=True):
            r = Answer(item, f"upload answer for row {row.seq}")
            result = ItemResult(r.str("id"), r.int("seq", 1), r.str("status", choices=ITEM_STATES),
                                r.opt_str("reason"), r.opt_str("original_status",
                                                               choices=("accepted", "declined_after_offline")))
            if result.id != row.id or result.seq != row.seq:
                raise BackendAnswerError(f"upload answer: result {result.id}/{result.seq} does not match row "
                                         f"{row.id}/{row.seq}")
            parsed.append(result)
        gaps = []
        for gap in a.list("gaps"):
            g = Answer(gap, "upload answer gap")
            gaps.append((g.int("first", 1), g.int("last", 1)))
        ack = a.data.get("head_ack") if isinstance(a.data, dict) else None
        return BatchAnswer(tuple(parsed), a.int("highest_contiguous_seq"), tuple(gaps),
                           dict(ack) if isinstance(ack, dict) else None)

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
            "card_token": token if isinstance(token, str) and CARD_TOKEN.fullmatch(token) else None,
            "masked_pan": facts.pop("masked_pan", None), "sealed_card": facts.pop("sealed_card", None),
            "scheme": facts.pop("scheme", None),
            "wallet_tier": request.wallet_tier.value if request.wallet_tier else None,
            "cvm_performed": request.cvm_performed, "deadline_ms": deadline_ms,
            "details": _plain({k: v for k, v in facts.items() if v is not None}),
        }
        data = self._call("POST", "/v1/authorisations", body=body, timeout_ms=deadline_ms)
        with self._reading():
            a = Answer(data, "authorisation answer")
            answer = AuthorisationAnswer(a.str("id"), a.str("status", choices=("approved", "declined")) == "approved",
                                         a.opt_str("reason"), a.opt_str("auth_code", AUTH_CODE))
            if answer.id != txn_id:
                raise BackendAnswerError(f"authorisation answer is for {answer.id}, not {txn_id}")
            return answer

    def register_payment(self, reference: str, amount: int, currency: str, valid_until: str) -> PaymentStatus:
        """Register a merchant code before it is shown: from now on it belongs to this terminal (the
        backend answers another terminal's questions about it with 404). Retrying with the same values
        is safe (`valid_until` as the same text)."""
        data = self._call("POST", "/v1/payments", body={"reference": reference, "amount": amount,
                                                         "currency": currency, "valid_until": valid_until})
        with self._reading():
            a = Answer(data, "merchant code registration")
            status = PaymentStatus(a.str("reference"), a.str("status", choices=("pending", "paid", "cancelled")),
                                   a.int("amount", 1), a.str("currency"), None, None)
            if status.reference != reference or status.amount != amount or status.currency != currency:
                raise BackendAnswerError(f"merchant code registration answers for {status.reference} "
                                         f"{status.amount} {status.currency}, not {reference} {amount} {currency}")
            return status

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
            a = Answer(data, "payment status")
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
        a = Answer(data, "deny-list answer")
        added = []
        for entry in a.list("added"):
            e = Answer(entry, "deny-list entry")
            added.append((e.str("card_token", CARD_TOKEN), e.str("reason")[:64]))
        removed = []
        for token in a.list("removed"):
            if not isinstance(token, str) or not CARD_TOKEN.fullmatch(token):
                raise BackendAnswerError(f"deny-list answer: removed token {token!r:.40} is not a token")
            removed.append(token)
        return DenyDelta(a.int("version"), a.int("latest_version"), a.bool("has_more"), a.bool("reset"),
                         tuple(added), tuple(removed))

    def terminal_limits(self) -> TerminalLimits:
        data = self._call("GET", "/v1/terminal-config")
        with self._reading():
            a = Answer(data, "terminal config")
            limits = a.obj("limits")
            values = {name: limits.opt_int(name) for name in LIMIT_NAMES}
            return TerminalLimits(a.int("version"), a.str("currency", re.compile(r"[A-Z]{3}")), values)

    def issuer_keys(self) -> tuple[int, dict[str, bytes]]:
        data = self._call("GET", "/v1/issuer-keys")
        with self._reading():
            a = Answer(data, "issuer keys")
            keys: dict[str, bytes] = {}
            for item in a.list("keys"):
                k = Answer(item, "issuer key")
                k.str("algorithm", choices=("Ed25519",))
                keys[k.str("key_id", KEY_ID)] = bytes.fromhex(k.str("public_key", HEX64))
            return a.int("version"), keys

    def sealing_key(self) -> tuple[str, bytes]:
        data = self._call("GET", "/v1/sealing-key")
        with self._reading():
            a = Answer(data, "sealing key")
            a.str("algorithm", choices=("x25519-aesgcm-v1",))
            return a.str("key_id", KEY_ID), bytes.fromhex(a.str("public_key", HEX64))

    def transit_journeys(self, card_token: str, day: date) -> dict[str, Any]:
        """The back office's journeys and daily charge of a card (`GET /v1/transit/cards/{token}/journeys`)."""
        if not CARD_TOKEN.fullmatch(card_token):
            raise BackendAnswerError("not a card token")
        data = self._call("GET", f"/v1/transit/cards/{card_token}/journeys", params={"date": day.isoformat()})
        with self._reading():
            a = Answer(data, "transit journeys")
            a.int("daily_charge")
            a.list("journeys")
            return dict(data)


class _ClockCorrected(Exception):
    """Internal: the signing clock was corrected from the backend's time; sign and send again."""


__all__ = ["COMPRESS_ABOVE", "BackendClient"]
