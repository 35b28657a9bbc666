"""Reading a terminal's request, cheapest checks first: the size the route allows (before a byte of
the body is read), the request signature (before the body is parsed), then the JSON (its nesting
depth bounded) and only then the schema of the contract.

Signatures are `terminal.wire`'s: Ed25519 by the terminal's enrolled key over method, path and
query as sent, timestamp, nonce and the SHA-256 of the body as sent; a stale timestamp or a nonce
used before is refused.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import current_app, g, request

from terminal.wire import (
    MAX_SKEW_S,
    AuthorizationFormatError,
    SignedHeader,
    body_sha256,
    parse_authorization,
    signing_bytes,
)

from .errors import Refused
from .faults import FaultInjector
from .spec import Validators
from .store import Store

MAX_BODY = 16 * 1024 * 1024  # a batch of journal rows, the largest body of the contract
SMALL_BODY = 64 * 1024  # every other body of the contract is far smaller
MAX_DEPTH = 64  # JSON nesting: the contract's deepest body (a row's details) is far shallower


@dataclass
class Backend:
    """What the routes work with, kept in the Flask app (`app.extensions["walletpos_sandbox"]`)."""

    store: Store
    faults: FaultInjector
    validators: Validators
    admin_token: str


def backend() -> Backend:
    return current_app.extensions["walletpos_sandbox"]


# -- the body ------------------------------------------------------------------------------------


def limit_body(limit: int) -> None:
    """Refuse (413) a body larger than `limit` before reading any of it (by its Content-Length),
    and stop reading a body sent without one at `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, "too_large", f"the body is larger than {limit} bytes")
    request.max_content_length = limit
    g.body_limit = limit


def raw_body() -> bytes:
    """The body as sent (its hash is signed), at most the route's limit."""
    if "raw" not in g:
        if "body_limit" not in g:
            limit_body(SMALL_BODY)
        g.raw = request.get_data(cache=True)
    return g.raw


def _integral_only(text: str) -> int:
    """JSON numbers with a fraction or exponent: the contract has no non-integer numbers, but JSON
    Schema counts 1083.0 as the integer 1083, so integral values are read as integers."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Refused(400, "not_json", "a number in the body is not a JSON number") from None
    if not value.is_finite() or value != value.to_integral_value() or abs(value) > 10**18:
        raise Refused(422, "invalid_request", f"floats are not accepted ({text[:40]}); amounts are integer minor units")
    return int(value)


def _no_constants(text: str) -> Any:
    raise Refused(400, "not_json", f"{text} is not JSON")


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest if isinstance(value, (dict, list)) else 0


def parse_json(data: bytes, *, floats: bool = False) -> Any:
    """UTF-8 JSON of at most MAX_DEPTH levels, no NaN/Infinity, and (unless `floats`: the admin API
    takes rates and seconds) no floats; gzip already undone."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "not_utf8", "the body is not UTF-8") from None
    too_deep = Refused(400, "too_deep", f"the body nests arrays and objects more than {MAX_DEPTH} levels deep")
    try:
        body = json.loads(text, parse_float=float if floats else _integral_only, parse_constant=_no_constants)
    except RecursionError:  # the parser's own bound, far above MAX_DEPTH
        raise too_deep from None
    except json.JSONDecodeError as exc:
        raise Refused(400, "not_json", f"the body is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") \
            from None
    if isinstance(body, (dict, list)) and _depth(body) > MAX_DEPTH:
        raise too_deep
    return body


def decoded_body() -> bytes:
    """The body with its Content-Encoding (gzip or identity) undone, within the route's limit."""
    data = raw_body()
    limit = g.get("body_limit", SMALL_BODY)
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding == "gzip":
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = inflater.decompress(data, limit + 1)
        except zlib.error:
            raise Refused(400, "bad_encoding", "the gzip body cannot be decompressed") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise Refused(413, "too_large", f"the body is larger than {limit} bytes once decompressed")
    elif encoding != "identity":
        raise Refused(415, "unsupported_encoding", "Content-Encoding must be gzip or identity")
    return data


def json_body(schema: str | None = None) -> Any:
    """The body as JSON, checked against the contract's `schema` when one is named. Call after the
    request's signature was checked."""
    if (request.mimetype or "").lower() != "application/json":
        raise Refused(415, "unsupported_media_type", "the body must be application/json")
    body = parse_json(decoded_body())
    if schema is not None:
        backend().validators.check(schema, body)
    return body


# -- the signature -------------------------------------------------------------------------------


def signed_header() -> SignedHeader:
    """The Authorization header, well formed and with a timestamp within the allowed skew."""
    try:
        header = parse_authorization(request.headers.get("Authorization"))
    except AuthorizationFormatError as exc:
        raise Refused(401, "bad_authorization", str(exc)) from None
    store = backend().store
    if abs(store.db.now_ms() - header.ts_ms) > MAX_SKEW_S * 1000:
        raise Refused(401, "stale_timestamp", f"the request time is more than {MAX_SKEW_S} s from the backend's clock",
                      server_time=store.now_text())
    return header


def _signed_path() -> str:
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        return raw
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


def authenticate(header: SignedHeader | None = None, key: Ed25519PublicKey | None = None) -> str:
    """Check the request's signature (by `key`, else the enrolled key of the terminal it names) and
    use up its nonce; returns the terminal id. An unknown terminal is refused before the body is
    read."""
    header = header or signed_header()
    store = backend().store
    if key is None:
        key = store.terminals.key(header.terminal_id)
        if key is None:
            raise Refused(401, "unknown_terminal",
                          f"terminal {header.terminal_id} is not enrolled; run walletpos backend enrol")
    message = signing_bytes(header.terminal_id, request.method, _signed_path(), header.ts_ms, header.nonce,
                            body_sha256(raw_body()))
    try:
        key.verify(header.signature, message)
    except InvalidSignature:
        raise Refused(401, "bad_signature", "the request signature does not verify with the terminal's key") from None
    if not store.terminals.use_nonce(header.terminal_id, header.nonce, header.ts_ms):
        raise Refused(401, "replayed_nonce", "this request nonce was already used")
    return header.terminal_id


# -- the query -----------------------------------------------------------------------------------


def int_arg(name: str, *, required: bool, low: int, high: int, default: int | None = None) -> int:
    """A whole-number query parameter, given at most once, within [low, high]."""
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
