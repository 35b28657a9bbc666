"""The sandbox backend's HTTP application (Flask): the terminal API of docs/openapi.yaml, and a small
admin API for tests and demos under /admin (authenticated by the X-Sandbox-Admin-Token header).

Request bodies are validated against the schemas of the OpenAPI file itself, so the sandbox cannot
drift from the contract: a body the file does not allow is refused with 422 naming the problem.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import zlib
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from terminal.wire import (
    MAX_SKEW_S,
    AuthorizationFormatError,
    body_sha256,
    parse_authorization,
    signing_bytes,
)

from .faults import Fault, FaultInjector, FaultPlan
from .store import Refused, Store

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
MAX_BODY = 16 * 1024 * 1024
ADMIN_HEADER = "X-Sandbox-Admin-Token"


class InjectedReset(ConnectionResetError):
    """Raised by the fault layer: the server resets the TCP connection instead of answering."""


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


class Validators:
    """jsonschema validators for the request bodies, built from the OpenAPI file's components."""

    def __init__(self, spec: dict[str, Any]):
        self._spec = spec
        self._cache: dict[str, Any] = {}

    def check(self, name: str, body: Any) -> None:
        validator = self._cache.get(name)
        if validator is None:
            validator = self._cache[name] = jsonschema_rs.validator_for(
                {"$ref": f"#/components/schemas/{name}", "components": self._spec["components"]})
        for error in validator.iter_errors(body):
            where = "/".join(str(p) for p in error.instance_path) or "the body"
            raise Refused(422, "invalid_request", f"{where}: {error.message}")


def _integral_only(text: str) -> int:
    """JSON numbers with a fraction or exponent: the contract has no non-integer numbers, but JSON
    Schema counts 1083.0 as the integer 1083, so integral values are read as integers."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Refused(400, "not_json", f"{text} is not a JSON number") from None
    if not value.is_finite() or value != value.to_integral_value() or abs(value) > 10**18:
        raise Refused(422, "invalid_request", f"floats are not accepted ({text[:40]}); amounts are integer minor units")
    return int(value)


def _no_constants(text: str) -> Any:
    raise Refused(400, "not_json", f"{text} is not JSON")


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":"), ensure_ascii=False), status=status,
                    mimetype="application/json", headers=headers)


def problem(status: int, code: str, message: str, **extra: Any) -> Response:
    headers = {}
    if "retry_after_s" in extra:
        headers["Retry-After"] = str(extra["retry_after_s"])
    return _json_response({"error": code, "message": message, **extra}, status, headers)


def create_app(store: Store, faults: FaultInjector, *, admin_token: str, spec: dict[str, Any] | None = None) -> Flask:
    spec = spec or load_spec()
    validators = Validators(spec)
    app = Flask("walletpos_sandbox")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False  # type: ignore[attr-defined]

    # -- request plumbing -------------------------------------------------------------------------

    def raw_body() -> bytes:
        if "raw" not in g:
            g.raw = request.get_data(cache=True)
        return g.raw

    def json_body(schema: str) -> Any:
        content_type = (request.mimetype or "").lower()
        if content_type != "application/json":
            raise Refused(415, "unsupported_media_type", "the body must be application/json")
        data = raw_body()
        encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                data = inflater.decompress(data, MAX_BODY + 1)
            except zlib.error:
                raise Refused(400, "bad_encoding", "the gzip body cannot be decompressed") from None
            if len(data) > MAX_BODY or inflater.unconsumed_tail:
                raise Refused(413, "too_large", f"the body is larger than {MAX_BODY} bytes once decompressed")
        elif encoding != "identity":
            raise Refused(415, "unsupported_encoding", "Content-Encoding must be gzip or identity")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "not_utf8", "the body is not UTF-8") from None
        try:
            body = json.loads(text, parse_float=_integral_only, parse_constant=_no_constants)
        except json.JSONDecodeError as exc:
            raise Refused(400, "not_json", f"the body is not JSON: {exc}") from None
        validators.check(schema, body)
        return body

    def signed_path() -> str:
        raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
        if raw:
            return raw
        query = request.query_string.decode("latin-1")
        return request.path + (f"?{query}" if query else "")

    def authenticate(key: Ed25519PublicKey | None = None) -> str:
        try:
            header = parse_authorization(request.headers.get("Authorization"))
        except AuthorizationFormatError as exc:
            raise Refused(401, "bad_authorization", str(exc)) from None
        now_ms = int(store.now().timestamp() * 1000)
        if abs(now_ms - header.ts_ms) > MAX_SKEW_S * 1000:
            raise Refused(401, "stale_timestamp",
                          f"the request time is more than {MAX_SKEW_S} s from the backend's clock",
                          server_time=store.now_text())
        if key is None:
            key = store.terminal_key(header.terminal_id)
            if key is None:
                raise Refused(401, "unknown_terminal",
                              f"terminal {header.terminal_id} is not enrolled; run walletpos backend enrol")
        message = signing_bytes(header.terminal_id, request.method, signed_path(), header.ts_ms, header.nonce,
                                body_sha256(raw_body()))
        try:
            key.verify(header.signature, message)
        except Exception:  # InvalidSignature
            raise Refused(401, "bad_signature", "the request signature does not verify with the terminal's key") \
                from None
        if not store.use_nonce(header.terminal_id, header.nonce, header.ts_ms):
            raise Refused(401, "replayed_nonce", "this request nonce was already used")
        return header.terminal_id

    def require_admin() -> None:
        given = request.headers.get(ADMIN_HEADER, "")
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            raise Refused(403, "not_admin", f"the admin API needs the {ADMIN_HEADER} header")

    @app.errorhandler(Refused)
    def _refused(exc: Refused) -> Response:
        return problem(exc.status, exc.code, exc.message, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.code or 500, "http_error")
        response = problem(exc.code or 500, code, exc.description or exc.name)
        for name, value in exc.get_headers():
            if name.lower() == "allow":
                response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> Response:
        app.logger.exception("sandbox backend failed")
        return problem(500, "internal_error", f"{type(exc).__name__}: {exc}")

    # -- terminal API (docs/openapi.yaml) ---------------------------------------------------------

    @app.post("/v1/enrolment")
    def enrolment() -> Response:
        try:
            header = parse_authorization(request.headers.get("Authorization"))
        except AuthorizationFormatError as exc:
            raise Refused(401, "bad_authorization", str(exc)) from None
        body = json_body("EnrolmentRequest")
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(body["public_key"]))
        except ValueError:
            raise Refused(401, "bad_signature", "the public key is not an Ed25519 key") from None
        terminal_id = authenticate(key)
        if terminal_id != header.terminal_id or terminal_id != body["terminal_id"]:
            raise Refused(401, "bad_authorization", "the signed terminal id differs from the body's")
        return _json_response(store.enrol(body["terminal_id"], body["public_key"], body["enrolment_token"]))

    @app.post("/v1/heartbeat")
    def heartbeat() -> Response:
        terminal_id = authenticate()
        body = json_body("HeartbeatRequest")
        if body["terminal_id"] != terminal_id:
            raise Refused(401, "bad_authorization", "the body's terminal id is not the signing terminal's")
        return _json_response(store.heartbeat(terminal_id, body))

    @app.post("/v1/transactions/batches")
    def upload() -> Response:
        terminal_id = authenticate()
        body = json_body("TransactionBatch")
        if body["terminal_id"] != terminal_id:
            raise Refused(401, "bad_authorization", "the body's terminal id is not the signing terminal's")
        key = store.terminal_key(terminal_id)
        assert key is not None
        return _json_response(store.ingest(terminal_id, key, body["records"]))

    @app.post("/v1/authorisations")
    def authorise() -> Response:
        terminal_id = authenticate()
        body = json_body("AuthorisationRequest")
        return _json_response(store.authorise(terminal_id, body))

    @app.get("/v1/payments/<reference>")
    def payment(reference: str) -> Response:
        terminal_id = authenticate()
        validators.check("Reference", reference)
        return _json_response(store.payment(reference, terminal_id))

    @app.post("/v1/payments/<reference>/cancel")
    def cancel_payment(reference: str) -> Response:
        terminal_id = authenticate()
        validators.check("Reference", reference)
        json_body("PaymentCancel")
        return _json_response(store.cancel_payment(reference, terminal_id))

    @app.get("/v1/deny-list")
    def deny_list() -> Response:
        authenticate()
        since = _int_arg("since", required=True, low=0, high=9007199254740991)
        limit = _int_arg("limit", required=False, low=1, high=10000, default=5000)
        return _json_response(store.deny_delta(since, limit))

    @app.get("/v1/terminal-config")
    def terminal_config() -> Response:
        authenticate()
        return _json_response(store.config())

    @app.get("/v1/issuer-keys")
    def issuer_keys() -> Response:
        authenticate()
        return _json_response(store.issuer_keys())

    @app.get("/v1/sealing-key")
    def sealing_key() -> Response:
        authenticate()
        return _json_response(store.sealing_key())

    # -- admin API (not part of the contract) -----------------------------------------------------

    def admin_json() -> dict[str, Any]:
        body = request.get_json(silent=True)
        if body is None and request.get_data():
            raise Refused(400, "not_json", "the admin body must be JSON")
        if body is not None and not isinstance(body, dict):
            raise Refused(422, "invalid_request", "the admin body must be a JSON object")
        return body or {}

    @app.before_request
    def _admin_gate() -> None:
        if request.path.startswith("/admin/"):
            require_admin()

    @app.post("/admin/enrolment-tokens")
    def admin_token_new() -> Response:
        body = admin_json()
        return _json_response({"token": store.new_enrolment_token(body.get("terminal_id"))}, 201)

    @app.post("/admin/terminals")
    def admin_register() -> Response:
        body = admin_json()
        store.register_terminal(body["terminal_id"], bytes.fromhex(body["public_key"]))
        return _json_response({"terminal_id": body["terminal_id"]}, 201)

    @app.post("/admin/deny-list")
    def admin_deny() -> Response:
        body = admin_json()
        return _json_response({"version": store.deny(body["card_token"], body.get("reason", "blocked_by_issuer"))})

    @app.delete("/admin/deny-list/<token>")
    def admin_allow(token: str) -> Response:
        return _json_response({"version": store.allow(token)})

    @app.post("/admin/out-of-funds")
    def admin_broke() -> Response:
        body = admin_json()
        store.set_out_of_funds(body["card_token"], bool(body.get("out_of_funds", True)))
        return _json_response({"card_token": body["card_token"], "out_of_funds": bool(body.get("out_of_funds", True))})

    @app.post("/admin/payments/<reference>/paid")
    def admin_paid(reference: str) -> Response:
        body = admin_json()
        owner = body.get("terminal_id")
        if owner is not None and not isinstance(owner, str):
            raise Refused(400, "invalid_request", "terminal_id must be a string")
        return _json_response(store.mark_paid(reference, body.get("amount"), body.get("currency"),
                                              body.get("card_token"), owner))

    @app.put("/admin/config")
    def admin_config() -> Response:
        body = admin_json()
        return _json_response(store.set_config(body.get("currency", "CNY"), body.get("limits", {})))

    @app.post("/admin/issuer-keys")
    def admin_issuer_new() -> Response:
        return _json_response(store.new_issuer_key(admin_json().get("key_id")), 201)

    @app.delete("/admin/issuer-keys/<key_id>")
    def admin_issuer_retire(key_id: str) -> Response:
        store.retire_issuer_key(key_id)
        return _json_response({"key_id": key_id, "retired": True})

    @app.post("/admin/issuer-keys/<key_id>/sign")
    def admin_issuer_sign(key_id: str) -> Response:
        body = admin_json()
        try:
            payload = base64.b64decode(body["payload"], validate=True)
        except (KeyError, ValueError, TypeError):
            raise Refused(422, "invalid_request", "payload must be base64 of the bytes to sign") from None
        signature = store.issuer_sign(key_id, payload)
        return _json_response({"key_id": key_id, "signature": base64.b64encode(signature).decode()})

    @app.post("/admin/sealing-key/rotate")
    def admin_rotate_seal() -> Response:
        return _json_response(store.rotate_sealing_key())

    @app.post("/admin/sealed/open")
    def admin_open_sealed() -> Response:
        text = admin_json().get("sealed", "")
        return _json_response({"payload": base64.b64encode(store.open_sealed(text)).decode()})

    @app.put("/admin/faults")
    def admin_faults() -> Response:
        try:
            plan = FaultPlan.from_dict(admin_json())
        except ValueError as exc:
            raise Refused(422, "invalid_request", str(exc)) from None
        faults.configure(plan)
        return _json_response(faults.snapshot())

    @app.get("/admin/faults")
    def admin_faults_state() -> Response:
        return _json_response(faults.snapshot())

    @app.delete("/admin/faults")
    def admin_faults_off() -> Response:
        faults.configure(FaultPlan())
        return _json_response(faults.snapshot())

    @app.put("/admin/clock")
    def admin_clock() -> Response:
        store.clock_offset_s = float(admin_json().get("offset_s", 0))
        return _json_response({"offset_s": store.clock_offset_s, "server_time": store.now_text()})

    @app.get("/admin/stats")
    def admin_stats() -> Response:
        terminal_id = request.args.get("terminal_id")
        return _json_response({**store.stats(terminal_id), "faults": faults.snapshot(),
                               "authorisations": store.authorisation_count(),
                               "heartbeat": store.last_heartbeat(terminal_id) if terminal_id else None})

    @app.get("/admin/transactions")
    def admin_transactions() -> Response:
        terminal_id = request.args.get("terminal_id", "")
        after = int(request.args.get("after_seq", 0))
        limit = int(request.args.get("limit", 1000))
        return _json_response({"transactions": store.transactions(terminal_id, after_seq=after, limit=limit)})

    @app.post("/admin/transactions/forget")
    def admin_forget() -> Response:
        body = admin_json()
        return _json_response({"forgotten": store.forget(body["terminal_id"], body["seqs"])})

    @app.post("/admin/reset")
    def admin_reset() -> Response:
        store.reset()
        store.clock_offset_s = 0.0
        faults.configure(FaultPlan())
        faults.reset_counters()
        return _json_response({"reset": True})

    return app


def _int_arg(name: str, *, required: bool, low: int, high: int, default: int | None = None) -> int:
    values = request.args.getlist(name)
    if not values:
        if required:
            raise Refused(422, "invalid_request", f"query parameter {name} is required")
        assert default is not None
        return default
    if len(values) > 1:
        raise Refused(422, "invalid_request", f"query parameter {name} is given more than once")
    text = values[0]
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        raise Refused(422, "invalid_request", f"query parameter {name} must be a whole number")
    value = int(text)
    if not low <= value <= high:
        raise Refused(422, "invalid_request", f"query parameter {name} must be from {low} to {high}")
    return value


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
