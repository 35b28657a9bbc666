"""The errors of talking to the backend: one root (`BackendError`, a `SyncError`) whose subclasses
say whether trying again may help (`retryable`) and whether the backend itself answered
(`answered`)."""

from __future__ import annotations

from terminal.errors import SyncError


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


__all__ = ["BackendAnswerError", "BackendError", "BackendRefused", "BackendUnreachable", "CertificatePinMismatch",
           "NotEnrolled"]
