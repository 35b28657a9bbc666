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

Modules: `errors`, `enrolment`, `breaker` (the circuit breaker), `transport` (the signed session and
certificate pinning), `answers` (reading the backend's answers), `client` (`BackendClient`, one
method per operation) and `authorizer` (online authorisation with a deadline, for the payment flow).
Every name is importable from `terminal.backend` itself; nothing here imports `terminal.service`.
"""

from __future__ import annotations

from terminal.backend.answers import (
    ITEM_STATES,
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
from terminal.backend.authorizer import BackendAuthorizer
from terminal.backend.breaker import CircuitBreaker
from terminal.backend.client import COMPRESS_ABOVE, BackendClient
from terminal.backend.enrolment import ENROLMENT_FILE, Enrolment
from terminal.backend.errors import (
    BackendAnswerError,
    BackendError,
    BackendRefused,
    BackendUnreachable,
    CertificatePinMismatch,
    NotEnrolled,
)
from terminal.backend.transport import retry_after_seconds, signing_session, spki_sha256

# the names these had when the client was one module
_Answer = Answer
_retry_after = retry_after_seconds

__all__ = [
    "COMPRESS_ABOVE", "ENROLMENT_FILE", "ITEM_STATES", "LIMIT_NAMES", "AuthorisationAnswer", "BackendAnswerError",
    "BackendAuthorizer", "BackendClient", "BackendError", "BackendRefused", "BackendUnreachable", "BatchAnswer",
    "CertificatePinMismatch", "CircuitBreaker", "DenyDelta", "Enrolment", "HeartbeatAnswer", "ItemResult",
    "NotEnrolled", "PaymentStatus", "SupportTicket", "TerminalLimits", "retry_after_seconds", "signing_session",
    "spki_sha256",
]
