"""TLS to the backend: certificates are verified, an optional pin on the server key is enforced before
anything is sent, plain HTTP is only accepted for a backend on this machine, and the terminal's
backend credentials are owner-only files. The HTTPS sandbox uses a self-signed certificate made
here with `cryptography`."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox import start_sandbox
from terminal.backend import ENROLMENT_FILE, BackendUnreachable, CertificatePinMismatch, Enrolment, spki_sha256
from terminal.config import config_from_mapping
from terminal.errors import ConfigError, SecurityError
from tests.backend.conftest import TERMINAL, fill

pytestmark = pytest.mark.timeout(60)


def self_signed(directory: Path, name: str, *, days: int = 1) -> tuple[Path, Path, str]:
    """A certificate for 127.0.0.1 signed by its own key, valid `days`: (cert PEM, key PEM, SPKI sha256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"walletpos sandbox {name}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, spki_sha256(cert.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="module")
def https_sandbox(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key, pin = self_signed(directory, "server")
    other_cert, _, other_pin = self_signed(directory, "other")
    sandbox = start_sandbox(certfile=str(cert), keyfile=str(key))
    yield sandbox, cert, pin, other_cert, other_pin
    sandbox.stop()


def batch_requests(sandbox) -> int:
    return sandbox.admin.stats(TERMINAL)["faults"]["requests"].get("/v1/transactions/batches", 0)


def test_https_with_verified_certificate_and_matching_pin(https_sandbox, make_service, tmp_path):
    sandbox, cert, pin, _, _ = https_sandbox
    sandbox.admin.reset()
    assert sandbox.url.startswith("https://127.0.0.1:")
    svc = make_service(sandbox.url, backend={"ca_file": str(cert), "pin_sha256": [pin]})
    svc.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
    fill(svc, 5)
    report = svc.sync_once()
    assert report.ok and report.accepted == 5
    assert sandbox.admin.stats(TERMINAL)["stored"] == 5


def test_a_wrong_pin_refuses_the_server_before_anything_is_sent(https_sandbox, make_service, tmp_path):
    """The certificate verifies (same CA file) but its key is not the pinned one: the connection is
    dropped after the handshake and the request never reaches the backend."""
    sandbox, cert, _, _, other_pin = https_sandbox
    sandbox.admin.reset()
    good = make_service(sandbox.url, data_dir=tmp_path / "t", backend={"ca_file": str(cert)})
    good.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
    fill(good, 3)
    good.close()
    pinned = make_service(sandbox.url, data_dir=tmp_path / "t", backend={"ca_file": str(cert),
                                                                          "pin_sha256": [other_pin]})
    before = sandbox.admin.stats(TERMINAL)["faults"]["requests"]
    with pytest.raises(CertificatePinMismatch, match="not pinned"):
        pinned.backend.upload(pinned.require_journal().sync.pending())
    report = pinned.sync_once()
    assert not report.ok and "not pinned" in report.error and report.queue_after == 3
    assert sandbox.admin.stats(TERMINAL)["faults"]["requests"] == before  # nothing reached the API
    assert sandbox.admin.stats(TERMINAL)["stored"] == 0


def test_an_unknown_certificate_is_refused(https_sandbox, make_service):
    """TLS verification is on: without the sandbox's certificate as CA (or with another one) the
    terminal refuses the backend."""
    sandbox, _, _, other_cert, _ = https_sandbox
    sandbox.admin.reset()
    token = sandbox.admin.enrolment_token(TERMINAL)
    svc = make_service(sandbox.url)  # system trust store
    with pytest.raises(BackendUnreachable, match="certificate is not trusted"):
        svc.enrol_backend(token)
    svc.close()
    other = make_service(sandbox.url, data_dir=svc.data_dir, backend={"ca_file": str(other_cert)})
    with pytest.raises(BackendUnreachable, match="certificate is not trusted"):
        other.enrol_backend(token)


def test_plain_http_only_to_this_machine():
    for url in ("http://127.0.0.1:8765", "http://localhost:8765", "https://wallet.example.com",
                "https://10.1.2.3:8443"):
        assert config_from_mapping({"backend": {"url": url}}).backend.url == url
    for url in ("http://wallet.example.com", "http://192.168.1.10:8765", "ftp://127.0.0.1", "https://"):
        with pytest.raises(ConfigError, match=r"\[backend\] url"):
            config_from_mapping({"backend": {"url": url}})
    with pytest.raises(ConfigError, match="64 lowercase hex digits"):
        config_from_mapping({"backend": {"pin_sha256": ["AB" * 32]}})


def test_enrolment_file_is_private_and_checked(sandbox, enrolled, make_service, tmp_path):
    path = enrolled.data_dir / ENROLMENT_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert data["backend_url"] == sandbox.url and data["public_key"] == enrolled.keys.public_key_bytes.hex()
    assert all(p.stat().st_mode & 0o077 == 0 for p in enrolled.data_dir.iterdir() if p.is_file())
    os.chmod(path, 0o644)
    with pytest.raises(SecurityError, match="readable by others"):
        Enrolment.load(enrolled.data_dir)
    data_dir = enrolled.data_dir
    enrolled.close()
    reopened = make_service(sandbox.url, data_dir=data_dir)
    status = reopened.sync_status()
    assert not status.enrolled and "chmod 600" in status.enrolment_problem
    assert reopened.payments.online.reachable() is False
    os.chmod(path, 0o600)
    other_backend = make_service("http://127.0.0.1:1", data_dir=data_dir)
    assert "enrolled with " + sandbox.url in other_backend.sync_status().enrolment_problem
