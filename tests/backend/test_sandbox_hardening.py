"""What the sandbox backend does with hostile or broken requests, over real HTTP on 127.0.0.1: junk
enrolments are refused from their headers, before their (large) bodies are read, and an enrolled
terminal's heartbeat is answered meanwhile; JSON nesting is bounded; and no answer ever carries a
Python exception's text, not even when the sandbox itself fails (a real SQLite failure)."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import statistics
import threading
import time
from typing import Any

import pytest
import requests

from terminal.backend import signing_session
from terminal.wire import format_authorization, new_nonce
from tests.backend.conftest import TERMINAL

pytestmark = pytest.mark.timeout(120)

JUNK_BYTES = 14 * 1024 * 1024
JUNK_SENDERS = 4
PYTHON_TEXT = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b|File \"")


def junk_enrolment() -> bytes:
    """A 14 MiB enrolment body: valid fields, then millions of zeros where the software version goes
    (what took the old sandbox seconds of parsing and schema checks per request)."""
    head = (b'{"terminal_id":"JUNK0001","public_key":"' + b"00" * 32
            + b'","enrolment_token":"' + b"x" * 16 + b'","software_version":[')
    zeros = (JUNK_BYTES - len(head) - 3) // 2
    return head + b"0," * zeros + b"0]}"


def junk_headers() -> dict[str, str]:
    """Well formed and fresh, with a signature that verifies nothing."""
    auth = format_authorization("JUNK0001", int(time.time() * 1000), new_nonce(), os.urandom(64))
    return {"Authorization": auth, "Content-Type": "application/json"}


def heartbeat_body() -> dict[str, Any]:
    return {"terminal_id": TERMINAL, "terminal_time": "2026-11-23T02:00:00.000000Z", "queue_depth": 0,
            "software_version": "t", "deny_list_version": 0, "config_version": 0, "issuer_keys_version": 0}


def answers_before_body(port: int, body: bytes, sent: int, clients: int) -> list[int | None]:
    """`clients` connections at once each send a junk enrolment's headers and only the first `sent`
    bytes of its body; the HTTP status each is answered with before the rest of its body comes
    (None: no answer within 20 s)."""
    socks = []
    for _ in range(clients):
        head = "".join(f"{k}: {v}\r\n" for k, v in junk_headers().items())
        request = (f"POST /v1/enrolment HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:sent]
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        sock.sendall(request)
        socks.append(sock)
    deadline = time.monotonic() + 20
    statuses: list[int | None] = []
    for sock in socks:
        answer = b""
        with sock:
            try:
                while b"\r\n" not in answer:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
            except TimeoutError:
                pass
        match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
        statuses.append(int(match.group(1)) if match else None)
    return statuses


def test_junk_enrolments_are_refused_from_their_headers_while_a_heartbeat_is_answered(sandbox, enrolled):
    junk = junk_enrolment()
    signed = signing_session(enrolled.keys, TERMINAL)
    url = sandbox.url

    def heartbeat() -> tuple[int, float]:
        started = time.monotonic()
        response = signed.post(url + "/v1/heartbeat", json=heartbeat_body(), timeout=60)
        return response.status_code, (time.monotonic() - started) * 1000

    baseline = [heartbeat() for _ in range(10)]

    # 1. junk with its body barely begun: answered from the headers, not after reading 14 MiB
    sent = 64 * 1024
    early = answers_before_body(sandbox.port, junk, sent, JUNK_SENDERS)
    print(f"\njunk enrolments of {len(junk)} bytes, {JUNK_SENDERS} at once, {sent} bytes sent: answered {early}")
    assert all(status == 413 for status in early), "a junk enrolment was not refused before its body was read"

    # 2. junk sent in full by four clients at once, while the enrolled terminal keeps sending heartbeats
    junk_answers: list[str] = []

    def send_junk() -> None:
        with requests.Session() as session:
            session.trust_env = False
            for _ in range(2):
                started = time.monotonic()
                try:
                    status = str(session.post(url + "/v1/enrolment", data=junk, headers=junk_headers(),
                                              timeout=60).status_code)
                except requests.ConnectionError:
                    status = "closed"  # the server closed the connection after refusing
                junk_answers.append(f"{status} in {(time.monotonic() - started) * 1000:.0f} ms")

    senders = [threading.Thread(target=send_junk) for _ in range(JUNK_SENDERS)]
    for sender in senders:
        sender.start()
    during: list[tuple[int, float]] = []
    while any(s.is_alive() for s in senders) and len(during) < 1000:
        during.append(heartbeat())
    for sender in senders:
        sender.join(90)
    signed.close()

    def ms(samples: list[tuple[int, float]]) -> str:
        times = [t for _, t in samples]
        return f"{len(times)} heartbeats, median {statistics.median(times):.1f} ms, max {max(times):.1f} ms" \
            if times else "no heartbeats"

    print(f"junk enrolments sent in full by {JUNK_SENDERS} clients, 2 each: {junk_answers}\n"
          f"heartbeat alone: {ms(baseline)}; while junk was sent: {ms(during)}")
    assert len(junk_answers) == 2 * JUNK_SENDERS
    assert all(a.startswith(("413", "closed")) for a in junk_answers), junk_answers
    assert {status for status, _ in baseline + during} == {200}


def test_json_nesting_is_bounded(sandbox, enrolled):
    signed = signing_session(enrolled.keys, TERMINAL)
    admin = sandbox.admin.session

    def deep(levels: int) -> bytes:
        return b'{"terminal_id":"' + TERMINAL.encode() + b'","x":' + b"[" * levels + b"]" * levels + b"}"

    answers = {
        "batch 100,000 deep": signed.post(sandbox.url + "/v1/transactions/batches", data=deep(100_000),
                                          headers={"Content-Type": "application/json"}, timeout=30),
        "admin 100,000 deep": admin.put(sandbox.url + "/admin/faults", data=deep(100_000),
                                        headers={"Content-Type": "application/json"}, timeout=30),
        "heartbeat 65 deep": signed.post(sandbox.url + "/v1/heartbeat", data=deep(64),  # 64 in x, the body is 1
                                         headers={"Content-Type": "application/json"}, timeout=30),
        "heartbeat 64 deep": signed.post(sandbox.url + "/v1/heartbeat", data=deep(63),
                                         headers={"Content-Type": "application/json"}, timeout=30),
    }
    signed.close()
    seen = {name: (r.status_code, r.json()["error"], r.json()["message"][:60]) for name, r in answers.items()}
    print(f"\n{seen}")
    for name in ("batch 100,000 deep", "admin 100,000 deep", "heartbeat 65 deep"):
        assert seen[name][:2] == (400, "too_deep"), name
    assert seen["heartbeat 64 deep"][:2] == (422, "invalid_request")  # deep enough to parse, then the schema
    assert not any(PYTHON_TEXT.search(r.text) for r in answers.values())


def test_no_answer_carries_a_python_exception_text(sandbox, enrolled):
    admin = sandbox.admin.session
    url = sandbox.url
    probes = {
        "terminal without its fields": ("POST", "/admin/terminals", {}),
        "terminal key not hex": ("POST", "/admin/terminals", {"terminal_id": "T1", "public_key": "zz"}),
        "deny without a token": ("POST", "/admin/deny-list", {}),
        "forget without seqs": ("POST", "/admin/transactions/forget", {"terminal_id": TERMINAL}),
        "clock not a number": ("PUT", "/admin/clock", {"offset_s": "soon"}),
        "open what is not sealed": ("POST", "/admin/sealed/open", {"sealed": "not sealed"}),
        "limits not numbers": ("PUT", "/admin/config", {"limits": {"floor_limit": "x"}}),
        "sign without payload": ("POST", "/admin/issuer-keys/none/sign", {}),
    }
    answers = {name: admin.request(method, url + path, json=body, timeout=10)
               for name, (method, path, body) in probes.items()}
    answers["after_seq not a number"] = admin.get(url + "/admin/transactions?after_seq=abc", timeout=10)
    # the sandbox itself fails: a real SQLite failure under the heartbeat (a trigger refuses the write)
    db = sqlite3.connect(sandbox.db_path)
    db.execute("CREATE TRIGGER refuse_heartbeats BEFORE INSERT ON heartbeats "
               "BEGIN SELECT RAISE(FAIL, 'internal detail 42 of the heartbeats table'); END")
    db.commit()
    try:
        signed = signing_session(enrolled.keys, TERMINAL)
        failed = signed.post(url + "/v1/heartbeat", json=heartbeat_body(), timeout=10)
        signed.close()
    finally:
        db.execute("DROP TRIGGER refuse_heartbeats")
        db.commit()
        db.close()
    leaks = {name: r.text for name, r in [*answers.items(), ("failing heartbeat", failed)]
             if PYTHON_TEXT.search(r.text) or "internal detail" in r.text}
    print(f"\n{len(answers) + 1} broken requests, answers: "
          f"{ {name: r.status_code for name, r in answers.items()} }, failing heartbeat: {failed.status_code}; "
          f"leaks: {leaks}")
    assert leaks == {}
    for name, response in answers.items():
        assert response.status_code in (404, 422), (name, response.text)
        assert set(response.json()) >= {"error", "message"}
    assert failed.status_code == 500 and failed.json()["error"] == "internal_error"
    assert json.loads(failed.text)["message"] == "the sandbox backend failed on this request; its log has the details"
