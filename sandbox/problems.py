"""Answers of the sandbox backend: JSON bodies, and one error handler that turns every failure into
a problem JSON (`{"error": code, "message": text}`) of the contract's `Error` shape.

A refusal says what was wrong with the request. An HTTP error of the framework (unknown path,
method not allowed, body too large) keeps its status. Anything else is a fault of the sandbox
itself: it is logged with its traceback, and the answer is a plain 500 that never carries the
exception's text (which can quote request data or internals).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from .errors import Refused

log = logging.getLogger("walletpos.sandbox")

_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
               415: "unsupported_media_type"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":"), ensure_ascii=False), status=status,
                    mimetype="application/json", headers=headers)


def problem(status: int, code: str, message: str, **extra: Any) -> Response:
    headers = {}
    if "retry_after_s" in extra:
        headers["Retry-After"] = str(extra["retry_after_s"])
    return json_response({"error": code, "message": message, **extra}, status, headers)


def answer_failure(exc: Exception) -> Response:
    """The one error handler of the app: every exception a route raises ends here."""
    if isinstance(exc, Refused):
        return problem(exc.status, exc.code, exc.message, **exc.extra)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        response = problem(status, _HTTP_CODES.get(status, "http_error"), exc.description or exc.name)
        for name, value in exc.get_headers():
            if name.lower() == "allow":
                response.headers["Allow"] = value
        return response
    log.error("sandbox backend failed", exc_info=exc)
    return problem(500, "internal_error", "the sandbox backend failed on this request; its log has the details")


def install(app: Flask) -> None:
    app.register_error_handler(Exception, answer_failure)
