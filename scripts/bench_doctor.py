#!/usr/bin/env python3
"""Benchmark: how long `walletpos doctor` takes on a healthy terminal, check by check.

The rig is the one of tests/integration/test_doctor.py: pcscd with the vpcd reader and a virtual
Visa card in it (started here when none runs; the reader check is skipped without the PC/SC stack),
the sandbox backend over HTTPS with a self-signed certificate that the terminal pins, the simulated
camera showing a code, a journal with a synced payment. The doctor runs `--runs` times; the areas run
side by side, so the total is about the slowest area (the camera is sampled for 1.5 s).

Target: the whole doctor under 5 s on a healthy machine.

Usage: scripts/bench_doctor.py [--runs N] [--text]   (--text: also print the last report as
`walletpos doctor` prints it, on standard error). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.benchkit import machine  # noqa: E402


def self_signed(directory: Path) -> tuple[Path, Path, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from terminal.backend import spki_sha256

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "walletpos sandbox")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, spki_sha256(cert.public_bytes(serialization.Encoding.DER))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--text", action="store_true")
    args = parser.parse_args()

    from drivers.camera import CameraScanner
    from drivers.sim.cards import make_card
    from drivers.sim.pcscd import PcscdUnavailable, ensure_pcscd
    from drivers.sim.vpcd import VpcdCardServer
    from drivers.simcamera import SimulatedCamera
    from sandbox import start_sandbox
    from terminal.bootstrap import Devices, bootstrap
    from terminal.commands.doctor import report_lines
    from terminal.config import config_from_mapping
    from terminal.core.money import Money
    from terminal.core.rules import Method, PaymentRequest
    from terminal.payment import CardFacts

    work = Path(tempfile.mkdtemp(prefix="walletpos-bench-doctor-"))
    pcscd = card = None
    try:
        pcscd = ensure_pcscd()
        card = VpcdCardServer(port=pcscd.vpcd_port)
        card.insert(make_card("visa"))
        reader = f"pcsc:{pcscd.reader}"
        from drivers.pcsc import PcscReader

        look = PcscReader(pcscd.reader, share="shared")
        deadline = time.monotonic() + 3  # pcscd sees the card at its next presence poll (every 400 ms)
        while look.status().state != "card_present" and time.monotonic() < deadline:
            time.sleep(0.05)
        look.close()
    except PcscdUnavailable as exc:
        print(f"no PC/SC stack ({exc}); the reader is the simulated one", file=sys.stderr)
        reader = "sim:"
    cert, key, pin = self_signed(work)
    sandbox = start_sandbox(certfile=str(cert), keyfile=str(key))
    camera = SimulatedCamera()
    camera.show("https://wallet.example/pay/0001")
    config = config_from_mapping({"backend": {"url": sandbox.url, "ca_file": str(cert), "pin_sha256": [pin]},
                                  "reader": {"device": reader}})
    runs: list[Any] = []
    try:
        with bootstrap(config, work / "terminal",
                       devices=Devices(open_scanner=lambda: CameraScanner(camera))) as svc:
            svc.enrol_backend(sandbox.admin.enrolment_token(svc.config.terminal.id))
            svc.pay(PaymentRequest(Money(1200, svc.currency), Method.CARD, card_token="tokA"),
                    CardFacts(scheme="visa", masked_pan="476173******0010", card_token="tokA"))
            svc.sync_once()
            for _ in range(args.runs):
                runs.append(svc.doctor())
    finally:
        sandbox.stop()
        if card is not None:
            card.close()
        if pcscd is not None and pcscd.owned:
            pcscd.stop()
    totals = [r.total_ms for r in runs]
    last = runs[-1]
    if args.text:
        print("\n".join(report_lines(last)), file=sys.stderr)
    per_check: dict[str, list[float]] = {}
    for report in runs:
        for check in report.checks:
            per_check.setdefault(f"{check.area}.{check.name}", []).append(check.ms)
    print(json.dumps({
        "benchmark": "doctor", "runs": len(runs), "reader": reader,
        "total_ms": {"median": round(statistics.median(totals), 1), "max": round(max(totals), 1),
                     "each": [round(t, 1) for t in totals]},
        "target_ms": 5000, "within_target": max(totals) < 5000,
        "statuses": last.counts(), "exit_code": last.exit_code,
        "check_ms_median": {k: round(statistics.median(v), 1) for k, v in per_check.items()},
        "machine": machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
