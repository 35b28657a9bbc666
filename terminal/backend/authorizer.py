"""Online authorisation for the payment flow: the backend asked with a hard deadline."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Mapping
from typing import Any

from terminal.backend.client import BackendClient
from terminal.backend.errors import BackendError
from terminal.core.rules import PaymentRequest
from terminal.payment import OnlineAnswer

log = logging.getLogger("walletpos.backend")


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
        """The backend's answer, or None when it did not come within the deadline or could not be read."""
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


__all__ = ["BackendAuthorizer"]
