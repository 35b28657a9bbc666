"""The admin API of the sandbox (`/admin/...`, not part of the contract): what tests and the demo use
to play the bank and the customer's wallet app (enrolment tokens, the deny list, wallets out of
funds, paying a merchant code, limits, issuer keys, the sealing key), to inject faults and to look
at what the backend holds. Every request needs the X-Sandbox-Admin-Token header."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from flask import Blueprint, Response, request

from terminal.errors import SecurityError

from .errors import Refused
from .faults import FaultPlan
from .problems import json_response
from .signed_requests import backend, decoded_body, int_arg, limit_body, parse_json
from .store.transit import parse_day

ADMIN_HEADER = "X-Sandbox-Admin-Token"
ADMIN_BODY = 1024 * 1024

admin_api = Blueprint("admin", __name__, url_prefix="/admin")


@admin_api.before_request
def _admin_only() -> None:
    given = request.headers.get(ADMIN_HEADER, "")
    if not hmac.compare_digest(given.encode(), backend().admin_token.encode()):
        raise Refused(403, "not_admin", f"the admin API needs the {ADMIN_HEADER} header")
    limit_body(ADMIN_BODY)


def admin_json() -> dict[str, Any]:
    data = decoded_body()
    if not data:
        return {}
    body = parse_json(data, floats=True)
    if not isinstance(body, dict):
        raise Refused(422, "invalid_request", "the admin body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise Refused(422, "invalid_request", f"{name} must be a non-empty string")
    return value


def _whole(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise Refused(422, "invalid_request", f"{name} must be a whole number (minor units) or null")
    return value


@admin_api.post("/enrolment-tokens")
def new_enrolment_token() -> Response:
    terminal_id = _text(admin_json(), "terminal_id", required=False)
    return json_response({"token": backend().store.terminals.new_enrolment_token(terminal_id)}, 201)


@admin_api.post("/terminals")
def register_terminal() -> Response:
    body = admin_json()
    terminal_id = _text(body, "terminal_id")
    try:
        public_key = bytes.fromhex(_text(body, "public_key"))
    except ValueError:
        raise Refused(422, "invalid_request", "public_key must be hex") from None
    backend().store.terminals.register(terminal_id, public_key)
    return json_response({"terminal_id": terminal_id}, 201)


@admin_api.post("/deny-list")
def deny() -> Response:
    body = admin_json()
    reason = _text(body, "reason", required=False) or "blocked_by_issuer"
    return json_response({"version": backend().store.risk.deny(_text(body, "card_token"), reason)})


@admin_api.delete("/deny-list/<token>")
def allow(token: str) -> Response:
    return json_response({"version": backend().store.risk.allow(token)})


@admin_api.post("/card-pins")
def card_pin() -> Response:
    body = admin_json()
    token, pin = _text(body, "card_token"), _text(body, "pin")
    backend().store.payments.set_card_pin(token, pin)
    return json_response({"card_token": token})


@admin_api.post("/out-of-funds")
def out_of_funds() -> Response:
    body = admin_json()
    token, flag = _text(body, "card_token"), bool(body.get("out_of_funds", True))
    backend().store.risk.set_out_of_funds(token, flag)
    return json_response({"card_token": token, "out_of_funds": flag})


@admin_api.post("/payments/<reference>/paid")
def pay_merchant_code(reference: str) -> Response:
    """The wallet app pays a merchant code; `terminal_id` is the terminal label in the code."""
    body = admin_json()
    return json_response(backend().store.payments.mark_paid(
        reference, _whole(body, "amount"), _text(body, "currency", required=False),
        _text(body, "card_token", required=False), _text(body, "terminal_id", required=False)))


@admin_api.put("/config")
def set_limits() -> Response:
    body = admin_json()
    limits = body.get("limits", {})
    if not isinstance(limits, dict) or not all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                                               for v in limits.values()):
        raise Refused(422, "invalid_request", "limits must be an object of whole numbers (or null)")
    currency = _text(body, "currency", required=False) or "CNY"
    return json_response(backend().store.risk.set_config(currency, limits))


@admin_api.post("/issuer-keys")
def new_issuer_key() -> Response:
    key_id = _text(admin_json(), "key_id", required=False)
    return json_response(backend().store.keys.new_issuer_key(key_id), 201)


@admin_api.delete("/issuer-keys/<key_id>")
def retire_issuer_key(key_id: str) -> Response:
    backend().store.keys.retire_issuer_key(key_id)
    return json_response({"key_id": key_id, "retired": True})


@admin_api.post("/issuer-keys/<key_id>/sign")
def issuer_sign(key_id: str) -> Response:
    try:
        payload = base64.b64decode(_text(admin_json(), "payload"), validate=True)
    except (binascii.Error, ValueError):
        raise Refused(422, "invalid_request", "payload must be base64 of the bytes to sign") from None
    signature = backend().store.keys.issuer_sign(key_id, payload)
    return json_response({"key_id": key_id, "signature": base64.b64encode(signature).decode()})


@admin_api.post("/sealing-key/rotate")
def rotate_sealing_key() -> Response:
    return json_response(backend().store.keys.rotate_sealing_key())


@admin_api.post("/sealed/open")
def open_sealed() -> Response:
    sealed = _text(admin_json(), "sealed")
    try:
        payload = backend().store.keys.open_sealed(sealed)
    except SecurityError as exc:
        raise Refused(422, "not_sealed", exc.message) from None
    return json_response({"payload": base64.b64encode(payload).decode()})


@admin_api.put("/faults")
def set_faults() -> Response:
    try:
        plan = FaultPlan.from_dict(admin_json())
    except ValueError as exc:
        raise Refused(422, "invalid_request", str(exc)) from None
    backend().faults.configure(plan)
    return json_response(backend().faults.snapshot())


@admin_api.get("/faults")
def fault_state() -> Response:
    return json_response(backend().faults.snapshot())


@admin_api.delete("/faults")
def faults_off() -> Response:
    backend().faults.configure(FaultPlan())
    return json_response(backend().faults.snapshot())


@admin_api.put("/clock")
def set_clock() -> Response:
    offset = admin_json().get("offset_s", 0)
    if isinstance(offset, bool) or not isinstance(offset, int | float):
        raise Refused(422, "invalid_request", "offset_s must be a number of seconds")
    store = backend().store
    store.clock_offset_s = float(offset)
    return json_response({"offset_s": store.clock_offset_s, "server_time": store.now_text()})


@admin_api.get("/stats")
def stats() -> Response:
    store = backend().store
    terminal_id = request.args.get("terminal_id")
    return json_response({**store.transactions.stats(terminal_id), "faults": backend().faults.snapshot(),
                          "authorisations": store.payments.authorisation_count(),
                          "heartbeat": store.terminals.last_heartbeat(terminal_id) if terminal_id else None})


@admin_api.get("/transactions")
def transactions() -> Response:
    terminal_id = request.args.get("terminal_id", "")
    after = int_arg("after_seq", required=False, low=0, high=9007199254740991, default=0)
    limit = int_arg("limit", required=False, low=1, high=1_000_000, default=1000)
    return json_response({"transactions": backend().store.transactions.rows(terminal_id, after_seq=after,
                                                                            limit=limit)})


@admin_api.post("/transactions/forget")
def forget() -> Response:
    body = admin_json()
    seqs = body.get("seqs")
    if not isinstance(seqs, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seqs):
        raise Refused(422, "invalid_request", "seqs must be a list of sequence numbers")
    return json_response({"forgotten": backend().store.transactions.forget(_text(body, "terminal_id"), seqs)})


@admin_api.post("/terminals/<terminal_id>/support-request")
def request_support_bundle(terminal_id: str) -> Response:
    """Support asks the terminal for a bundle at its next heartbeat."""
    note = _text(admin_json(), "note", required=False) or ""
    return json_response({"terminal_id": terminal_id, "requested_at": backend().store.support.request(terminal_id,
                                                                                                      note)})


@admin_api.get("/support-bundles")
def support_bundles() -> Response:
    return json_response({"bundles": backend().store.support.bundles(request.args.get("terminal_id"))})


@admin_api.get("/support-bundles/<ticket>")
def support_bundle(ticket: str) -> Response:
    data = backend().store.support.bundle(ticket)
    if data is None:
        raise Refused(404, "unknown_ticket", f"no support bundle {ticket}")
    return json_response({"ticket": ticket, "bundle": base64.b64encode(data).decode()})
@admin_api.put("/transit/fare-table")
def set_fare_table() -> Response:
    """The network's fare table (TOML text, the format of terminal.core.fares) the back office prices with."""
    table = backend().store.transit.set_fare_table(_text(admin_json(), "toml"))
    return json_response({"fare_table": table.label, "currency": table.currency.alpha})


@admin_api.get("/transit/charges")
def transit_charges() -> Response:
    """Every card's daily charge of a service day (what the back office sends to be charged)."""
    return json_response(backend().store.transit.day_charges(parse_day(request.args.get("date"))))


@admin_api.get("/transit/cards/<card_token>")
def transit_card(card_token: str) -> Response:
    return json_response(backend().store.transit.day_charge(card_token, parse_day(request.args.get("date"))))


@admin_api.post("/reset")
def reset() -> Response:
    store, faults = backend().store, backend().faults
    store.reset()
    store.clock_offset_s = 0.0
    faults.configure(FaultPlan())
    faults.reset_counters()
    return json_response({"reset": True})
