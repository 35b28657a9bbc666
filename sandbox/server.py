"""Running the sandbox backend: a threaded HTTP(S) server on 127.0.0.1, in a background thread of the
caller or in its own process, and the admin client that tests and the demo use to steer it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import ADMIN_HEADER, InjectedReset, create_app, with_faults
from .faults import FaultInjector
from .store import Store


class _Handler(WSGIRequestHandler):
    """werkzeug's handler, quiet, and able to reset a connection (RST) when a fault says so."""

    _reset = False

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        if isinstance(error, InjectedReset):
            with contextlib.suppress(OSError):  # SO_LINGER 0: closing sends RST instead of FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self._reset = True

    def finish(self) -> None:
        super().finish()
        if self._reset:
            self.connection.close()


@dataclass
class SandboxServer:
    """One sandbox backend served from this process."""

    db_path: Path
    host: str = "127.0.0.1"
    port: int = 0
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    certfile: str | None = None
    keyfile: str | None = None

    def __post_init__(self) -> None:
        self.store = Store(self.db_path)
        self.faults = FaultInjector()
        app = create_app(self.store, self.faults, admin_token=self.admin_token)
        context = None
        if self.certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certfile, self.keyfile)
        self.server: BaseWSGIServer = make_server(self.host, self.port, with_faults(app, self.faults), threaded=True,
                                                  request_handler=_Handler, ssl_context=context)
        self.port = self.server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.05)

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self.serve_forever, name="sandbox-backend", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.close()


class AdminClient:
    """The sandbox's admin API (not part of the terminal contract)."""

    def __init__(self, url: str, token: str, *, verify: str | bool = True, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE and proxies from the environment would override verify
        self.session.headers[ADMIN_HEADER] = token
        self.session.verify = verify
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        response = self.session.request(method, self.url + path, json=body, params=params or None,
                                        timeout=self.timeout)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox admin {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def close(self) -> None:
        self.session.close()

    def enrolment_token(self, terminal_id: str | None = None) -> str:
        return self._call("POST", "/admin/enrolment-tokens", {"terminal_id": terminal_id})["token"]

    def register_terminal(self, terminal_id: str, public_key: bytes) -> None:
        self._call("POST", "/admin/terminals", {"terminal_id": terminal_id, "public_key": public_key.hex()})

    def deny(self, card_token: str, reason: str = "blocked_by_issuer") -> int:
        return self._call("POST", "/admin/deny-list", {"card_token": card_token, "reason": reason})["version"]

    def allow(self, card_token: str) -> int:
        return self._call("DELETE", f"/admin/deny-list/{card_token}")["version"]

    def card_pin(self, card_token: str, pin: str) -> None:
        """Set the test PIN of a card (default: sandbox.store.payments.DEFAULT_TEST_PIN)."""
        self._call("POST", "/admin/card-pins", {"card_token": card_token, "pin": pin})

    def out_of_funds(self, card_token: str, flag: bool = True) -> None:
        self._call("POST", "/admin/out-of-funds", {"card_token": card_token, "out_of_funds": flag})

    def mark_paid(self, reference: str, amount: int | None = None, currency: str | None = None,
                  card_token: str | None = None, terminal_id: str | None = None) -> dict[str, Any]:
        """The wallet app pays a merchant code (`terminal_id`: the terminal label in the code)."""
        return self._call("POST", f"/admin/payments/{reference}/paid",
                          {"amount": amount, "currency": currency, "card_token": card_token,
                           "terminal_id": terminal_id})

    def set_limits(self, currency: str = "CNY", **limits: int | None) -> dict[str, Any]:
        return self._call("PUT", "/admin/config", {"currency": currency, "limits": limits})

    def new_issuer_key(self, key_id: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/admin/issuer-keys", {"key_id": key_id})

    def retire_issuer_key(self, key_id: str) -> None:
        self._call("DELETE", f"/admin/issuer-keys/{key_id}")

    def issuer_sign(self, key_id: str, payload: bytes) -> bytes:
        """Sign bytes with issuer key `key_id`: the hook that mints signed wallet payment codes."""
        answer = self._call("POST", f"/admin/issuer-keys/{key_id}/sign",
                            {"payload": base64.b64encode(payload).decode()})
        return base64.b64decode(answer["signature"])

    def rotate_sealing_key(self) -> dict[str, Any]:
        return self._call("POST", "/admin/sealing-key/rotate")

    def open_sealed(self, sealed: str) -> bytes:
        return base64.b64decode(self._call("POST", "/admin/sealed/open", {"sealed": sealed})["payload"])

    def faults(self, **plan: Any) -> dict[str, Any]:
        return self._call("PUT", "/admin/faults", plan)

    def fault_state(self) -> dict[str, Any]:
        """The plan in force and the count of terminal API requests per path, faulty or not."""
        return self._call("GET", "/admin/faults")

    def faults_off(self) -> dict[str, Any]:
        return self._call("DELETE", "/admin/faults")

    def clock(self, offset_s: float) -> dict[str, Any]:
        return self._call("PUT", "/admin/clock", {"offset_s": offset_s})

    def stats(self, terminal_id: str | None = None) -> dict[str, Any]:
        if terminal_id:
            return self._call("GET", "/admin/stats", terminal_id=terminal_id)
        return self._call("GET", "/admin/stats")

    def transactions(self, terminal_id: str, after_seq: int = 0, limit: int = 100000) -> list[dict[str, Any]]:
        return self._call("GET", "/admin/transactions", terminal_id=terminal_id, after_seq=after_seq,
                          limit=limit)["transactions"]

    def forget(self, terminal_id: str, seqs: list[int]) -> int:
        """Make the backend lose these stored rows (data loss on the backend side)."""
        return self._call("POST", "/admin/transactions/forget", {"terminal_id": terminal_id, "seqs": seqs})["forgotten"]

    def set_fare_table(self, toml_text: str) -> dict[str, Any]:
        """The network's fare table for the transit back office."""
        return dict(self._call("PUT", "/admin/transit/fare-table", {"toml": toml_text}))

    def transit_charges(self, day: str) -> dict[str, Any]:
        """Every card's daily charge for service day `day` (YYYY-MM-DD)."""
        return dict(self._call("GET", "/admin/transit/charges", date=day))

    def transit_card(self, card_token: str, day: str) -> dict[str, Any]:
        """A card's journeys and daily charge for service day `day`."""
        return dict(self._call("GET", f"/admin/transit/cards/{card_token}", date=day))

    def reset(self) -> None:
        self._call("POST", "/admin/reset")

    def request_support_bundle(self, terminal_id: str, note: str = "") -> str:
        """Support asks the terminal for a support bundle at its next heartbeat."""
        return self._call("POST", f"/admin/terminals/{terminal_id}/support-request", {"note": note})["requested_at"]

    def support_bundles(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        if terminal_id:
            return self._call("GET", "/admin/support-bundles", terminal_id=terminal_id)["bundles"]
        return self._call("GET", "/admin/support-bundles")["bundles"]

    def support_bundle(self, ticket: str) -> bytes:
        """The zip a terminal sent under `ticket`."""
        return base64.b64decode(self._call("GET", f"/admin/support-bundles/{ticket}")["bundle"])


@dataclass
class Sandbox:
    """A running sandbox backend: its URL, its admin client, and how to stop it."""

    url: str
    admin: AdminClient
    db_path: Path
    admin_token: str
    _server: SandboxServer | None = None
    _process: subprocess.Popen[str] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        self.admin.close()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=10)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    *,
    db_path: str | os.PathLike[str] | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    in_process: bool = False,
    certfile: str | None = None,
    keyfile: str | None = None,
    admin_token: str | None = None,
    startup_timeout: float = 30.0,
) -> Sandbox:
    """Start a sandbox backend on a free port (or `port`) and return its URL and admin handle.

    By default it runs in its own process (`python -P -m sandbox serve` with the caller's interpreter
    and environment: the installed package, never a `sandbox` directory that happens to be in the
    working directory), so that the caller's CPU work and the backend's do not share one interpreter;
    `in_process=True` serves it from a background thread of the caller. `db_path` keeps its SQLite
    file (a temporary one otherwise), so a backend stopped and started again on the same file and
    port comes back with its data."""
    tmp = None
    if db_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="walletpos-sandbox-")
        db_path = Path(tmp.name) / "backend.sqlite3"
    db_path = Path(db_path)
    token = admin_token or secrets.token_urlsafe(24)
    verify: str | bool = certfile or True
    if in_process:
        server = SandboxServer(db_path, host, port, token, certfile, keyfile).start()
        return Sandbox(server.url, AdminClient(server.url, token, verify=verify), db_path, token, _server=server,
                       _tmp=tmp)
    command = [sys.executable, "-P", "-m", "sandbox", "serve", "--host", host, "--port", str(port),
               "--db", str(db_path), "--ready-json"]
    if certfile:
        command += ["--cert", certfile, "--key", keyfile or certfile]
    env = {**os.environ, "WALLETPOS_SANDBOX_ADMIN_TOKEN": token}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=None, text=True, env=env)
    ready: dict[str, Any] = {}

    def read_ready() -> None:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line:
            ready.update(json.loads(line))

    reader = threading.Thread(target=read_ready, daemon=True)
    reader.start()
    reader.join(startup_timeout)
    if "url" not in ready:
        process.kill()
        process.wait(timeout=10)
        if tmp is not None:
            tmp.cleanup()
        raise RuntimeError(f"the sandbox backend did not start within {startup_timeout} s "
                           f"(exit code {process.returncode})")
    url = ready["url"]
    return Sandbox(url, AdminClient(url, token, verify=verify), db_path, token, _process=process, _tmp=tmp)
