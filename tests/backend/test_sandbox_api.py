"""The sandbox backend's side of the contract, probed with hand-built HTTP requests: request
signatures and replay protection, enrolment rules, per-row verification of uploaded journal rows
(hash, signature, chain, idempotency, gaps), and refusal of bodies the OpenAPI file does not allow."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from terminal.journal import record_hash
from terminal.security import TerminalKeys
from terminal.wire import body_sha256, format_authorization, new_nonce, signing_bytes
from tests.backend.conftest import TERMINAL, fill

pytestmark = pytest.mark.timeout(60)


class Raw:
    """Requests signed by hand with terminal.wire (independent of the terminal's client)."""

    def __init__(self, url: str, keys: Any, terminal_id: str = TERMINAL):
        self.url, self.keys, self.terminal_id = url, keys, terminal_id
        self.session = requests.Session()
        self.session.trust_env = False

    def headers(self, method: str, path: str, body: bytes, *, ts: int | None = None, nonce: str | None = None,
                key: Any = None, terminal_id: str | None = None) -> dict[str, str]:
        ts = ts if ts is not None else int(time.time() * 1000)
        nonce = nonce or new_nonce()
        tid = terminal_id or self.terminal_id
        signature = (key or self.keys).sign(signing_bytes(tid, method, path, ts, nonce, body_sha256(body)))
        return {"Authorization": format_authorization(tid, ts, nonce, signature), "Content-Type": "application/json"}

    def send(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None, sign_path: str | None = None, **sign: Any) -> requests.Response:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        hdrs = self.headers(method, sign_path or path, data, **sign) if headers is None else headers
        return self.session.request(method, self.url + path, data=data or None, headers=hdrs, timeout=10)


@pytest.fixture
def raw(sandbox, enrolled) -> Raw:
    return Raw(sandbox.url, enrolled.keys)


def records(svc, n: int) -> list[dict[str, Any]]:
    fill(svc, n)
    svc.housekeeping()  # the rows are signed (what the sync worker uploads)
    out = []
    for row in svc.require_journal().sync.pending(n):
        record = row.upload_record()
        record.update(row_hash=row.row_hash, signature=row.signature)
        out.append(record)
    return out


def resign(record: dict[str, Any], keys: Any, **changes: Any) -> dict[str, Any]:
    """A record changed and signed again by `keys` (a valid row of whoever holds that key)."""
    new = {**record, **changes}
    new["row_hash"] = record_hash(new)
    new["signature"] = keys.sign(bytes.fromhex(new["row_hash"])).hex()
    return new


def upload(raw: Raw, recs: list[dict[str, Any]]) -> dict[str, Any]:
    response = raw.send("POST", "/v1/transactions/batches", {"terminal_id": TERMINAL, "records": recs})
    assert response.status_code == 200, response.text
    return response.json()


def error(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    return response.json()["error"]


# -- authentication --------------------------------------------------------------------------------


def test_signed_request_is_accepted(raw):
    assert raw.send("GET", "/v1/terminal-config").status_code == 200


def test_unsigned_and_malformed_authorization_are_refused(raw):
    assert error(raw.send("GET", "/v1/sealing-key", headers={}), 401) == "bad_authorization"
    for header in ("Bearer abc", "WPOS1-Ed25519 terminal=WPOS0001",
                   "WPOS1-Ed25519 terminal=WPOS0001,ts=1,nonce=x,sig=00",
                   "WPOS1-Ed25519 terminal=WPOS0001,terminal=WPOS0001,ts=1,nonce=abcdefghijklmnop,sig=" + "0" * 128):
        assert error(raw.send("GET", "/v1/sealing-key", headers={"Authorization": header}), 401) == "bad_authorization"


def test_signature_covers_key_body_path_and_time(raw):
    stranger = TerminalKeys(Ed25519PrivateKey.generate(), b"k" * 32)
    assert error(raw.send("GET", "/v1/issuer-keys", key=stranger), 401) == "bad_signature"
    body = {"terminal_id": TERMINAL, "records": []}
    headers = raw.headers("POST", "/v1/transactions/batches", json.dumps(body).encode())
    altered = json.dumps({**body, "terminal_id": "WPOS0002"}).encode()
    assert error(raw.send("POST", "/v1/transactions/batches", raw=altered, headers=headers), 401) == "bad_signature"
    response = raw.send("GET", "/v1/deny-list?since=5", sign_path="/v1/deny-list?since=0")
    assert error(response, 401) == "bad_signature"
    assert error(raw.send("GET", "/v1/issuer-keys", terminal_id="WPOS0099"), 401) == "unknown_terminal"


def test_replayed_and_stale_requests_are_refused(raw):
    headers = raw.headers("GET", "/v1/sealing-key", b"")
    assert raw.send("GET", "/v1/sealing-key", headers=headers).status_code == 200
    assert error(raw.send("GET", "/v1/sealing-key", headers=headers), 401) == "replayed_nonce"
    stale = raw.send("GET", "/v1/sealing-key", ts=int(time.time() * 1000) - 301_000)
    assert error(stale, 401) == "stale_timestamp" and stale.json()["server_time"].endswith("Z")


# -- enrolment -------------------------------------------------------------------------------------


def test_enrolment_rules(sandbox, make_service, tmp_path):
    svc = make_service(sandbox.url, data_dir=tmp_path / "a")
    keys = svc.keys
    raw = Raw(sandbox.url, keys)

    def enrol(token: str, terminal_id: str = TERMINAL, key: Any = keys) -> requests.Response:
        body = {"terminal_id": terminal_id, "public_key": key.public_key_bytes.hex(), "enrolment_token": token,
                "software_version": "test"}
        return raw.send("POST", "/v1/enrolment", body, key=key, terminal_id=terminal_id)

    assert error(enrol("u" * 20), 403) == "unknown_token"
    assert error(enrol(sandbox.admin.enrolment_token("WPOS0002")), 403) == "token_for_other_terminal"
    token = sandbox.admin.enrolment_token()
    first = enrol(token)
    assert first.status_code == 200 and first.json()["sealing_key"]["algorithm"] == "x25519-aesgcm-v1"
    assert enrol(token).json()["enrolled_at"] == first.json()["enrolled_at"]  # idempotent
    assert error(enrol(token, "WPOS0003"), 403) == "token_used"
    other = TerminalKeys(Ed25519PrivateKey.generate(), b"k" * 32)
    assert error(enrol(sandbox.admin.enrolment_token(), key=other), 409) == "already_enrolled"
    # the body names one key, the request is signed by another: no proof of possession
    body = {"terminal_id": "WPOS0004", "public_key": other.public_key_bytes.hex(),
            "enrolment_token": sandbox.admin.enrolment_token(), "software_version": "test"}
    assert error(raw.send("POST", "/v1/enrolment", body, terminal_id="WPOS0004"), 401) == "bad_signature"


# -- uploads ---------------------------------------------------------------------------------------


def test_upload_is_idempotent_per_transaction_id(sandbox, enrolled, raw):
    recs = records(enrolled, 3)
    first = upload(raw, recs)
    assert [r["status"] for r in first["results"]] == ["accepted"] * 3
    again = upload(raw, recs)
    assert [(r["status"], r["original_status"]) for r in again["results"]] == [("duplicate", "accepted")] * 3
    assert sandbox.admin.stats(TERMINAL)["stored"] == 3


def test_rows_that_do_not_verify_are_rejected_one_by_one(sandbox, enrolled, raw):
    recs = records(enrolled, 4)
    keys = enrolled.keys
    stranger = TerminalKeys(Ed25519PrivateKey.generate(), b"k" * 32)
    edited = {**recs[1], "amount": recs[1]["amount"] + 1}  # hash no longer matches
    forged = resign(recs[2], stranger, amount=1)  # consistent hash, but not the terminal's signature
    result = upload(raw, [recs[0], edited, forged, recs[3]])
    assert [(r["status"], r["reason"]) for r in result["results"]] == [
        ("accepted", None), ("rejected", "hash_mismatch"), ("rejected", "bad_signature"), ("accepted", None)]
    assert result["gaps"] == [{"first": 2, "last": 3}] and result["highest_contiguous_seq"] == 1

    same_id = resign(recs[0], keys, amount=99)  # signed by the terminal, but id 1 already holds another row
    other_terminal = resign(recs[1], keys, terminal_id="WPOS0009")
    broken_chain = resign(recs[1], keys, prev_hash="ab" * 32)
    seq_taken = resign(recs[1], keys, seq=4, id="another-id-0004")
    result = upload(raw, [same_id, other_terminal, broken_chain, seq_taken])
    assert [r["reason"] for r in result["results"]] == ["id_conflict", "wrong_terminal", "chain_break",
                                                        "seq_conflict"]
    result = upload(raw, [recs[1], recs[2]])  # the genuine rows close the gap
    assert [r["status"] for r in result["results"]] == ["accepted", "accepted"]
    assert result["gaps"] == [] and result["highest_contiguous_seq"] == 4


def test_gzip_bodies_are_accepted_and_bounded(sandbox, enrolled, raw):
    recs = records(enrolled, 2)
    body = gzip.compress(json.dumps({"terminal_id": TERMINAL, "records": recs}).encode())
    headers = raw.headers("POST", "/v1/transactions/batches", body)
    headers["Content-Encoding"] = "gzip"
    response = raw.send("POST", "/v1/transactions/batches", raw=body, headers=headers)
    assert response.status_code == 200 and len(response.json()["results"]) == 2
    bomb = gzip.compress(b" " * (17 * 1024 * 1024))  # 17 MiB of spaces in a few KB
    headers = raw.headers("POST", "/v1/heartbeat", bomb)
    headers["Content-Encoding"] = "gzip"
    assert error(raw.send("POST", "/v1/heartbeat", raw=bomb, headers=headers), 413) == "too_large"
    headers = raw.headers("POST", "/v1/heartbeat", b"{}")
    headers["Content-Encoding"] = "br"
    assert error(raw.send("POST", "/v1/heartbeat", raw=b"{}", headers=headers), 415) == "unsupported_encoding"


# -- bodies the contract does not allow ------------------------------------------------------------


def heartbeat(**changes: Any) -> dict[str, Any]:
    body = {"terminal_id": TERMINAL, "terminal_time": "2026-11-23T02:00:00.000000Z", "queue_depth": 0,
            "software_version": "t", "deny_list_version": 0, "config_version": 0, "issuer_keys_version": 0}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def test_invalid_bodies_are_refused_with_the_problem_named(raw):
    assert raw.send("POST", "/v1/heartbeat", heartbeat()).status_code == 200
    cases = [
        (heartbeat(queue_depth=-1), "queue_depth"),
        (heartbeat(queue_depth=...), "queue_depth"),
        (heartbeat(surprise=1), "surprise"),
        (heartbeat(terminal_time="yesterday"), "terminal_time"),
        ({"terminal_id": TERMINAL, "records": []}, "terminal_time"),
    ]
    for body, named in cases:
        response = raw.send("POST", "/v1/heartbeat", body)
        assert error(response, 422) == "invalid_request" and named in response.json()["message"], response.text
    floats = raw.send("POST", "/v1/heartbeat", raw=b'{"queue_depth": 1.5}')
    assert error(floats, 422) == "invalid_request" and "floats" in floats.json()["message"]
    assert error(raw.send("POST", "/v1/heartbeat", raw=b"{not json"), 400) == "not_json"
    assert error(raw.send("POST", "/v1/heartbeat", raw=b"\xff\xfe"), 400) == "not_utf8"
    headers = raw.headers("POST", "/v1/heartbeat", b"{}")
    headers["Content-Type"] = "text/plain"
    assert error(raw.send("POST", "/v1/heartbeat", raw=b"{}", headers=headers), 415) == "unsupported_media_type"
    assert error(raw.send("GET", "/v1/deny-list"), 422) == "invalid_request"  # since is required
    assert error(raw.send("GET", "/v1/deny-list?since=-1"), 422) == "invalid_request"
    assert error(raw.send("GET", "/v1/payments/" + "x" * 65), 422) == "invalid_request"


def test_unknown_paths_methods_and_admin_without_token(sandbox, raw):
    assert error(raw.send("GET", "/v1/nothing-here"), 404) == "not_found"
    response = raw.send("DELETE", "/v1/heartbeat")
    assert error(response, 405) == "method_not_allowed" and "POST" in response.headers["Allow"]
    plain = requests.Session()
    plain.trust_env = False
    assert error(plain.post(sandbox.url + "/admin/reset", timeout=10), 403) == "not_admin"
