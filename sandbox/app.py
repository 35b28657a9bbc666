"""The sandbox backend's HTTP application (Flask): the terminal API of docs/openapi.yaml as one
blueprint (`/v1`), the admin API for tests and demos as another (`/admin`), one error handler for
both, and the fault layer around the WSGI application that makes terminal requests go wrong on
purpose (see faults.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from . import problems
from .admin_api import ADMIN_HEADER, admin_api
from .faults import Fault, FaultInjector
from .signed_requests import MAX_BODY, Backend
from .spec import Validators, load_spec
from .store import Store
from .terminal_api import terminal_api

__all__ = ["ADMIN_HEADER", "InjectedReset", "create_app", "with_faults"]


class InjectedReset(ConnectionResetError):
    """Raised by the fault layer: the server resets the TCP connection instead of answering."""


def create_app(store: Store, faults: FaultInjector, *, admin_token: str, spec: dict[str, Any] | None = None) -> Flask:
    app = Flask("walletpos_sandbox")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY  # each route allows less, see signed_requests.limit_body
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["walletpos_sandbox"] = Backend(store, faults, Validators(spec or load_spec()), admin_token)
    app.register_blueprint(terminal_api)
    app.register_blueprint(admin_api)
    problems.install(app)
    return app


# ------------------------------------------------------------------------------------------------
# Fault injection around the WSGI application


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def with_faults(app: WsgiApp, faults: FaultInjector) -> WsgiApp:
    """Wrap the application so that terminal API requests go wrong as the fault plan says."""

    def run(environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return captured["status"], captured["headers"], body

    def reply(start_response: Callable, status: str, headers: list[tuple[str, str]], body: bytes) -> list[bytes]:
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def error_body(code: str, message: str, **extra: Any) -> bytes:
        return json.dumps({"error": code, "message": message, **extra}).encode()

    def wsgi(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/v1/"):
            return app(environ, start_response)
        fault: Fault | None = faults.draw(path)
        plan = faults.plan
        if plan.latency_ms and faults.applies(path):
            time.sleep(plan.latency_ms / 1000)
        json_type = [("Content-Type", "application/json")]
        if fault is not None and fault.phase == "before":
            if fault.kind == "reset":
                raise InjectedReset("injected connection reset")
            if fault.kind == "retry_after":
                status = "503 Service Unavailable" if fault.variant == "503" else "429 Too Many Requests"
                return reply(start_response, status, [*json_type, ("Retry-After", str(plan.retry_after_s))],
                             error_body("busy", "injected: try again later", retry_after_s=plan.retry_after_s))
            return reply(start_response, "500 Internal Server Error", json_type,
                         error_body("internal_error", "injected failure before processing"))
        status, headers, body = run(environ)
        if fault is None:
            return reply(start_response, status, headers, body)
        if fault.kind == "reset":
            raise InjectedReset("injected connection reset after processing")
        if fault.kind == "error":
            return reply(start_response, "500 Internal Server Error", json_type,
                         error_body("internal_error", "injected failure after processing"))
        if fault.kind == "timeout":
            time.sleep(plan.timeout_ms / 1000)
            return reply(start_response, status, headers, body)
        return reply(start_response, "200 OK", *_malformed(fault.variant or "truncated", body))

    return wsgi


def _malformed(variant: str, body: bytes) -> tuple[list[tuple[str, str]], bytes]:
    json_type = [("Content-Type", "application/json")]
    if variant == "html":
        return [("Content-Type", "text/html")], b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    if variant == "wrong_shape":
        return json_type, b'{"ok": true, "items": "later"}'
    if variant == "wrong_results":
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("results"), list) and data["results"]:
            data["results"] = data["results"][:-1]  # one row's answer is missing
            return json_type, json.dumps(data).encode()
        if isinstance(data, dict):
            return json_type, json.dumps({k: "?" for k in data}).encode()
    return json_type, body[: max(1, len(body) // 2)]  # cut off in the middle
