"""The terminal API of docs/openapi.yaml (`/v1/...`), exactly the operations of that file.

Every route checks the request's signature before it parses or validates the body; the body is
limited per route (a batch of journal rows may be large, nothing else is) before it is read.
Enrolment, whose signing key is in the body itself, reads at most a small body and checks the
signature header's form and time before reading it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Blueprint, Response, request

from terminal.journal import utc_text
from terminal.journal.record import head_ack_digest

from .errors import Refused
from .problems import json_response
from .signed_requests import (
    MAX_BODY,
    SMALL_BODY,
    authenticate,
    backend,
    int_arg,
    json_body,
    limit_body,
    signed_header,
)
from .store.transit import parse_day

terminal_api = Blueprint("terminal", __name__, url_prefix="/v1")

AUTHORISATION_BODY = 1024 * 1024  # sealed card data and signed details
SUPPORT_BUNDLE_BODY = 12 * 1024 * 1024  # a zip of at most 8 MiB, base64, in JSON
_BODY_LIMITS = {"terminal.upload": MAX_BODY, "terminal.authorise": AUTHORISATION_BODY,
                "terminal.support_bundle": SUPPORT_BUNDLE_BODY}
_HEX_KEY = re.compile(r"[0-9a-f]{64}")


@terminal_api.before_request
def _limit_body() -> None:
    limit_body(_BODY_LIMITS.get(request.endpoint or "", SMALL_BODY))


def _same_terminal(body: dict[str, Any], terminal_id: str) -> None:
    if body["terminal_id"] != terminal_id:
        raise Refused(401, "bad_authorization", "the body's terminal id is not the signing terminal's")


@terminal_api.post("/enrolment")
def enrolment() -> Response:
    header = signed_header()  # well formed and fresh, before any of the body is read
    body = json_body()  # at most SMALL_BODY bytes
    public_key = body.get("public_key") if isinstance(body, dict) else None
    if not isinstance(public_key, str) or not _HEX_KEY.fullmatch(public_key):
        backend().validators.check("EnrolmentRequest", body)  # names what is wrong with the key
        raise Refused(422, "invalid_request", "public_key: an Ed25519 public key in 64 hex digits is required")
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
    except ValueError:
        raise Refused(401, "bad_signature", "the public key is not an Ed25519 key") from None
    terminal_id = authenticate(header, key)  # signed by the key being enrolled: proof of possession
    backend().validators.check("EnrolmentRequest", body)
    if terminal_id != body["terminal_id"]:
        raise Refused(401, "bad_authorization", "the signed terminal id differs from the body's")
    store = backend().store
    enrolled_at = store.terminals.enrol(terminal_id, public_key, body["enrolment_token"])
    return json_response({"terminal_id": terminal_id, "enrolled_at": enrolled_at,
                          "sealing_key": store.keys.sealing_key(), "ack_public_key": store.keys.ack_public_key(),
                          "server_time": store.now_text()})


@terminal_api.post("/heartbeat")
def heartbeat() -> Response:
    terminal_id = authenticate()
    body = json_body("HeartbeatRequest")
    _same_terminal(body, terminal_id)
    store = backend().store
    now = store.db.now()
    skew: int | None
    try:
        terminal_time = datetime.fromisoformat(body["terminal_time"].replace("Z", "+00:00"))
        skew = int((terminal_time - now).total_seconds() * 1000)
    except ValueError:
        skew = None
    store.terminals.record_heartbeat(terminal_id, utc_text(now), body)
    return json_response({"server_time": utc_text(now), "clock_skew_ms": skew,
                          "deny_list_version": store.risk.deny_list_version(),
                          "config_version": store.risk.config()["version"],
                          "issuer_keys_version": store.keys.issuer_keys_version(),
                          "sealing_key_id": store.keys.sealing_key_id(),
                          "support_bundle_requested": store.support.requested(terminal_id)})


@terminal_api.post("/transactions/batches")
def upload() -> Response:
    terminal_id = authenticate()
    body = json_body("TransactionBatch")
    _same_terminal(body, terminal_id)
    store = backend().store
    key = store.terminals.key(terminal_id)
    assert key is not None  # authenticate() found it
    answer = store.transactions.ingest(terminal_id, key, body["records"])
    answer["head_ack"] = _head_ack(terminal_id, key.public_bytes_raw().hex(), answer["highest_contiguous_seq"])
    return json_response(answer)


def _head_ack(terminal_id: str, terminal_key: str, seq: int) -> dict[str, Any] | None:
    """The signed acknowledgement of every row up to `seq` (None while the backend holds none)."""
    store = backend().store
    row_hash = store.transactions.row_hash_at(terminal_id, seq) if seq else None
    if row_hash is None:
        return None
    at = store.now_text()
    digest = head_ack_digest(terminal_id, seq, row_hash, terminal_key, at)
    return {"terminal_id": terminal_id, "txn_seq": seq, "txn_hash": row_hash, "terminal_key": terminal_key,
            "at": at, "signature": store.keys.sign_ack(digest)}


@terminal_api.post("/authorisations")
def authorise() -> Response:
    terminal_id = authenticate()
    body = json_body("AuthorisationRequest")
    return json_response(backend().store.payments.authorise(terminal_id, body))


@terminal_api.post("/payments")
def register_payment() -> Response:
    terminal_id = authenticate()
    body = json_body("PaymentRegistration")
    created, code = backend().store.payments.register(terminal_id, body["reference"], body["amount"],
                                                      body["currency"], body["valid_until"])
    return json_response(code, 201 if created else 200)


@terminal_api.get("/payments/<reference>")
def payment(reference: str) -> Response:
    terminal_id = authenticate()
    backend().validators.check("Reference", reference)
    return json_response(backend().store.payments.status_for(reference, terminal_id))


@terminal_api.post("/payments/<reference>/cancel")
def cancel_payment(reference: str) -> Response:
    terminal_id = authenticate()
    backend().validators.check("Reference", reference)
    json_body("PaymentCancel")
    return json_response(backend().store.payments.cancel(reference, terminal_id))


@terminal_api.get("/deny-list")
def deny_list() -> Response:
    authenticate()
    since = int_arg("since", required=True, low=0, high=9007199254740991)
    limit = int_arg("limit", required=False, low=1, high=10000, default=5000)
    return json_response(backend().store.risk.deny_delta(since, limit))


@terminal_api.get("/terminal-config")
def terminal_config() -> Response:
    authenticate()
    return json_response(backend().store.risk.config())


@terminal_api.get("/issuer-keys")
def issuer_keys() -> Response:
    authenticate()
    return json_response(backend().store.keys.issuer_keys())


@terminal_api.get("/sealing-key")
def sealing_key() -> Response:
    authenticate()
    return json_response(backend().store.keys.sealing_key())


@terminal_api.post("/support-bundles")
def support_bundle() -> Response:
    terminal_id = authenticate()
    body = json_body("SupportBundleUpload")
    _same_terminal(body, terminal_id)
    try:
        data = base64.b64decode(body["bundle"], validate=True)
    except (binascii.Error, ValueError):
        raise Refused(422, "invalid_request", "bundle: not base64") from None
    if hashlib.sha256(data).hexdigest() != body["sha256"]:
        raise Refused(409, "bundle_damaged", "the bundle's bytes do not match its sha256 (damaged on the way); "
                                             "send it again")
    ticket = backend().store.support.receive(terminal_id, body["reason"], body["file_name"], body["sha256"], data)
    return json_response(ticket)
@terminal_api.get("/transit/cards/<card_token>/taps")
def transit_taps(card_token: str) -> Response:
    authenticate()
    backend().validators.check("CardToken", card_token)
    return json_response(backend().store.transit.day_taps(card_token, parse_day(request.args.get("date"))))


@terminal_api.get("/transit/cards/<card_token>/journeys")
def transit_journeys(card_token: str) -> Response:
    authenticate()
    backend().validators.check("CardToken", card_token)
    return json_response(backend().store.transit.day_charge(card_token, parse_day(request.args.get("date"))))
