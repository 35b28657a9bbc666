"""The one error the sandbox backend raises on purpose: a request it refuses."""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    """A request the backend refuses: HTTP status, machine code, message (and extra fields of the
    problem JSON, such as `server_time` or `retry_after_s`)."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra
