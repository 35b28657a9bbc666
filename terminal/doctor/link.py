"""The link to the backend, one layer at a time (name resolution, TCP, TLS handshake, certificate pin),
then the enrolment, the latency of signed requests (p50/p95 over a few heartbeats) and the clock.

The clock skew is this terminal's clock (the service's clock: injectable) at the middle of a
heartbeat's round trip minus the backend's `server_time` in the answer, the median over the
heartbeats: the way NTP reads a server, good to a few milliseconds on a local network. Each layer
that fails leaves the layers above it unmeasured (skipped, saying why), so a failure shows once,
where it happens.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import statistics
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from terminal.backend import BackendError, CertificatePinMismatch, NotEnrolled, spki_sha256
from terminal.doctor.checks import Check, advice
from terminal.doctor.context import DoctorContext

AREA = "backend"
CLOCK = "clock"
SKEW_WARN_S = 10.0
SKEW_FAIL_S = 60.0
CERT_WARN_DAYS = 14


def _skip_rest(names: list[str], why: str) -> list[Check]:
    return [Check(AREA, name, "skip", "not measured", why) for name in names]


def _clock_skip(why: str) -> Check:
    return Check(CLOCK, "skew", "skip", "not measured", why)


def _stopped(done: list[Check], failed: Check, rest: list[str], why: str, clock_why: str) -> list[Check]:
    """The checks so far, the one that failed, and the layers above it skipped (saying why)."""
    return [*done, failed, *_skip_rest(rest, why), _clock_skip(clock_why)]


def _network_step(host: str, port: int) -> dict[str, Any]:
    if host in ("127.0.0.1", "localhost", "::1"):
        return advice("backend_local_down", port=port)
    return advice("backend_unreachable", host=host, port=port)


def _tls(ctx: DoctorContext, host: str, port: int, timeout: float) -> tuple[list[Check], bool]:
    """The TLS handshake and the pin; (checks, whether the link can be used)."""
    import certifi
    from cryptography import x509

    cfg = ctx.config.backend
    t0 = time.perf_counter()
    try:
        context = ssl.create_default_context(cafile=cfg.ca_file or certifi.where())
    except (OSError, ssl.SSLError) as exc:
        return [Check(AREA, "tls", "fail", "CA file unreadable", f"[backend] ca_file {cfg.ca_file}: {exc}",
                      **advice("ca_file")),
                *_skip_rest(["pin"], "no TLS connection")], False
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            handshake_ms = (time.perf_counter() - t0) * 1000
            der = tls.getpeercert(binary_form=True) or b""
            version = tls.version() or "?"
    except ssl.SSLCertVerificationError as exc:
        return [Check(AREA, "tls", "fail", "certificate not trusted", f"{exc.verify_message or exc}",
                      ms=(time.perf_counter() - t0) * 1000, **advice("cert_untrusted")),
                *_skip_rest(["pin"], "no trusted TLS connection")], False
    except (OSError, ssl.SSLError) as exc:
        return [Check(AREA, "tls", "fail", "handshake failed", str(exc), ms=(time.perf_counter() - t0) * 1000,
                      **advice("tls_handshake")),
                *_skip_rest(["pin"], "no TLS connection")], False
    cert = x509.load_der_x509_certificate(der)
    days = (cert.not_valid_after_utc - datetime.now(UTC)).days
    measured = {"handshake_ms": round(handshake_ms, 2), "version": version, "subject": cert.subject.rfc4514_string(),
                "not_after": cert.not_valid_after_utc.isoformat(), "days_left": days}
    figure = f"{version}, {handshake_ms:.1f} ms, certificate valid {days} more days"
    checks = [Check(AREA, "tls", "warn" if days < CERT_WARN_DAYS else "pass", figure,
                    f"certificate of {cert.subject.rfc4514_string()}", measured=measured,
                    ms=(time.perf_counter() - t0) * 1000, **(advice("cert_expiring") if days < CERT_WARN_DAYS else {}))]
    digest = spki_sha256(der)
    if not cfg.pin_sha256:
        checks.append(Check(AREA, "pin", "skip", "no pin configured",
                            "[backend] pin_sha256 is empty: the certificate is trusted through the CA alone",
                            measured={"spki_sha256": digest}))
        return checks, True
    if digest in cfg.pin_sha256:
        checks.append(Check(AREA, "pin", "pass", "server key matches the pin", f"sha256 {digest}",
                            measured={"spki_sha256": digest}))
        return checks, True
    checks.append(Check(AREA, "pin", "fail", "server key is not pinned",
                        f"the backend presented key sha256 {digest}, which [backend] pin_sha256 does not list; "
                        "the terminal sends it nothing", measured={"spki_sha256": digest, "pins": list(cfg.pin_sha256)},
                        **advice("pin_mismatch")))
    return checks, False


def _latency_and_clock(ctx: DoctorContext) -> list[Check]:
    client = ctx.backend
    assert client is not None
    status = ctx.sync_status()
    rtts: list[float] = []
    skews: list[float] = []
    t0 = time.perf_counter()
    try:
        for _ in range(max(1, ctx.latency_requests)):
            before = ctx.clock()
            s0 = time.perf_counter()
            beat = client.heartbeat(queue_depth=status.queue_depth, oldest_pending_at=status.oldest_pending_at,
                                    last_sync_ok_at=status.last_success_at,
                                    deny_list_version=status.deny_list_version,
                                    config_version=status.limits_version,
                                    issuer_keys_version=status.issuer_keys_version)
            rtts.append((time.perf_counter() - s0) * 1000)
            after = ctx.clock()
            middle = before + (after - before) / 2
            skews.append((middle - beat.server_time).total_seconds())
    except CertificatePinMismatch as exc:
        return [Check(AREA, "latency", "fail", "refused: pin", exc.message, **advice("see_pin")),
                _clock_skip("no answer from the backend")]
    except NotEnrolled as exc:
        return [Check(AREA, "latency", "fail", "the backend does not know this terminal", exc.message,
                      **advice("enrol_again")),
                _clock_skip("no answer from the backend")]
    except BackendError as exc:
        return [Check(AREA, "latency", "fail", "no good answer", exc.message, ms=(time.perf_counter() - t0) * 1000,
                      **advice("sync_once")),
                _clock_skip("no answer from the backend")]
    ms = (time.perf_counter() - t0) * 1000
    ordered = sorted(rtts)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    deadline = ctx.config.backend.online_auth_deadline_ms
    measured = {"requests": len(rtts), "p50_ms": round(p50, 2), "p95_ms": round(p95, 2),
                "round_trips_ms": [round(r, 2) for r in rtts], "online_auth_deadline_ms": deadline}
    figure = f"p50 {p50:.1f} ms, p95 {p95:.1f} ms over {len(rtts)} signed heartbeats"
    if p50 >= deadline:
        latency = Check(AREA, "latency", "fail", figure,
                        f"slower than the online authorisation deadline ({deadline} ms): every payment above the "
                        "floor limit falls back to the offline answer", measured=measured, ms=ms,
                        **advice("link_slow"))
    elif p95 >= deadline / 2:
        latency = Check(AREA, "latency", "warn", figure, f"close to the online authorisation deadline ({deadline} ms)",
                        measured=measured, ms=ms, **advice("link_sluggish"))
    else:
        latency = Check(AREA, "latency", "pass", figure, "signed requests answered", measured=measured, ms=ms)
    skew = statistics.median(skews)
    measured_skew = {"skew_s": round(skew, 3), "samples_s": [round(s, 3) for s in skews]}
    direction = "ahead of" if skew > 0 else "behind"
    figure = f"{abs(skew):.1f} s {direction} the backend" if abs(skew) >= 0.05 else "in step with the backend"
    if abs(skew) >= SKEW_FAIL_S:
        clock = Check(CLOCK, "skew", "fail", figure, "receipts, sync ages and request signatures use this clock",
                      measured=measured_skew, **advice("set_clock"))
    elif abs(skew) >= SKEW_WARN_S:
        clock = Check(CLOCK, "skew", "warn", figure, "the clock drifts", measured=measured_skew, **advice("set_clock"))
    else:
        clock = Check(CLOCK, "skew", "pass", figure, "middle of each heartbeat's round trip against the backend's time",
                      measured=measured_skew)
    return [latency, clock]


def check_link(ctx: DoctorContext) -> list[Check]:
    cfg = ctx.config.backend
    if not cfg.enabled:
        return [Check(AREA, "link", "skip", "switched off", "[backend] enabled = false: an offline-only terminal"),
                _clock_skip("no backend to compare with")]
    url = urlsplit(cfg.url)
    host = url.hostname or ""
    https = url.scheme == "https"
    port = url.port or (443 if https else 80)
    timeout = cfg.connect_timeout_ms / 1000
    checks: list[Check] = []
    layers = ["tcp", "tls", "pin", "enrolment", "latency"] if https else ["tcp", "enrolment", "latency"]
    t0 = time.perf_counter()
    try:
        ipaddress.ip_address(host)
        checks.append(Check(AREA, "dns", "pass", f"{host} (an address: no lookup)", cfg.url))
        addresses = [host]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            failed = Check(AREA, "dns", "fail", f"{host} not found", f"name resolution failed: {exc}",
                           ms=(time.perf_counter() - t0) * 1000, **advice("dns"))
            return _stopped([], failed, layers, "the backend's name does not resolve", "no backend answer")
        addresses = sorted({str(info[4][0]) for info in infos})
        checks.append(Check(AREA, "dns", "pass", f"{host} -> {', '.join(addresses[:3])}",
                            f"{(time.perf_counter() - t0) * 1000:.1f} ms", measured={"addresses": addresses},
                            ms=(time.perf_counter() - t0) * 1000))
    t1 = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            connect_ms = (time.perf_counter() - t1) * 1000
    except TimeoutError:
        failed = Check(AREA, "tcp", "fail", f"no answer from {host}:{port} within {timeout:g} s",
                       "the connection attempt timed out", ms=(time.perf_counter() - t1) * 1000,
                       **_network_step(host, port))
        return _stopped(checks, failed, layers[1:], "no TCP connection", "no backend answer")
    except OSError as exc:
        why = "refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc))
        failed = Check(AREA, "tcp", "fail", f"{host}:{port} {why}", f"connecting failed: {exc}",
                       ms=(time.perf_counter() - t1) * 1000, **_network_step(host, port))
        return _stopped(checks, failed, layers[1:], "no TCP connection", "no backend answer")
    checks.append(Check(AREA, "tcp", "pass", f"{host}:{port} in {connect_ms:.1f} ms", "connection opened",
                        measured={"connect_ms": round(connect_ms, 2)}, ms=connect_ms))
    if https:
        tls_checks, usable = _tls(ctx, host, port, timeout)
        checks += tls_checks
        if not usable:
            return [*checks, *_skip_rest(["enrolment", "latency"], "the TLS link cannot be used"),
                    _clock_skip("no trusted answer from the backend")]
    client = ctx.backend
    if client is None:
        failed = Check(AREA, "enrolment", "fail", "no backend client",
                       ctx.storage_problem or "the journal is not open, so nothing can be synced",
                       **advice("fix_journal_first"))
        return _stopped(checks, failed, ["latency"], "no backend client", "no backend answer")
    enrolment = client.enrolment
    if enrolment is None:
        failed = Check(AREA, "enrolment", "fail", "not enrolled", client.enrolment_problem or "this terminal is not "
                       "enrolled", **advice("enrol"))
        return _stopped(checks, failed, ["latency"], "requests of a terminal that is not enrolled are refused",
                        "no answer from the backend")
    checks.append(Check(AREA, "enrolment", "pass", f"enrolled as {enrolment.terminal_id}",
                        f"since {enrolment.enrolled_at}, sealing key {enrolment.sealing_key_id}",
                        measured={"terminal_id": enrolment.terminal_id, "enrolled_at": enrolment.enrolled_at}))
    return [*checks, *_latency_and_clock(ctx)]


__all__ = ["check_link"]
