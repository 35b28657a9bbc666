"""pcscd with the vpcd virtual reader, for the tests and benchmarks that need a real PC/SC stack.

`ensure_pcscd()` makes sure a pcscd runs and lists the "Virtual PCD" reader: it reuses a pcscd that
already runs, or starts `pcscd -f` itself (and `stop()`s it at the end). When the stack is not there
(pcscd or vpcd not installed, pyscard missing, the daemon will not start) it raises
`PcscdUnavailable` with the reason; whether that is a skip or a failure is for the caller to decide
(the tests' `pcscd` fixture in tests/conftest.py fails under CI / WALLETPOS_REQUIRE_PCSC).

The card side is `drivers.sim.vpcd.VpcdCardServer(port=handle.vpcd_port)`; only one user at a time
(a test session, a benchmark) can use the vpcd port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

VPCD_CONF = Path("/etc/reader.conf.d/vpcd")
PID_FILE = Path("/run/pcscd/pcscd.pid")
READER_PREFIX = "Virtual PCD"
DEFAULT_VPCD_PORT = 0x8C7B
PORT_BUSY_RETRY_S = 75.0


class PcscdUnavailable(RuntimeError):
    """The PC/SC test stack (pcscd, vpcd, pyscard) is not installed or will not start; says why."""


def pcscd_binary() -> str | None:
    return shutil.which("pcscd") or next((p for p in ("/usr/sbin/pcscd", "/usr/local/sbin/pcscd")
                                          if os.access(p, os.X_OK)), None)


def vpcd_port() -> int:
    """The TCP port of the first vpcd slot, from /etc/reader.conf.d/vpcd (CHANNELID)."""
    with contextlib.suppress(OSError):
        match = re.search(r"^\s*CHANNELID\s+(\S+)", VPCD_CONF.read_text(), re.MULTILINE)
        if match:
            return int(match.group(1), 0)
    return DEFAULT_VPCD_PORT


def _is_live_pcscd(pid: int) -> bool:
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
        return name == "pcscd" and state not in "ZX"  # a zombie is not running
    return False


def running_pcscd_pid() -> int | None:
    """The pid of a running pcscd (its pid file, else a scan of /proc), or None."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(PID_FILE.read_text().split()[0])
        if _is_live_pcscd(pid):
            return pid
    for entry in Path("/proc").glob("[0-9]*"):
        if _is_live_pcscd(int(entry.name)):
            return int(entry.name)
    return None


def list_readers() -> list[str] | None:
    """The PC/SC reader names, or None when pcscd does not answer."""
    from smartcard import scard

    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return None
    try:
        hresult, names = scard.SCardListReaders(ctx, [])
        return list(names) if hresult == scard.SCARD_S_SUCCESS else []
    finally:
        scard.SCardReleaseContext(ctx)


@dataclass
class PcscdHandle:
    """A pcscd that lists the vpcd reader. `owned`: started here (and stopped by `stop`)."""

    owned: bool
    reader: str = ""  # full name of the first vpcd slot, e.g. "Virtual PCD 00 00"
    vpcd_port: int = DEFAULT_VPCD_PORT
    log_path: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def wait_ready(self, timeout: float = 10.0) -> str:
        """Wait until pcscd lists the vpcd reader; returns its name."""
        deadline = time.monotonic() + timeout
        while True:
            names = list_readers() or []
            vpcd = sorted(n for n in names if n.startswith(READER_PREFIX))
            if vpcd:
                self.reader = vpcd[0]
                return self.reader
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"pcscd exited with {self._proc.returncode}: {self.log_tail()}")
            if self._proc is not None and "Address already in use" in self.log_tail():
                raise RuntimeError(f"vpcd's port {self.vpcd_port} is busy; {self.log_tail()}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"pcscd does not list a {READER_PREFIX!r} reader after {timeout:.0f} s "
                                   f"(readers: {names}); {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self) -> str:
        if self.log_path is None:
            return "pcscd log not captured"
        with contextlib.suppress(OSError):
            return "pcscd log: " + self.log_path.read_text(errors="replace")[-1500:]
        return "pcscd log unreadable"

    def start(self) -> None:
        """Start our own `pcscd -f` (only when none runs)."""
        binary = pcscd_binary()
        if binary is None:
            raise RuntimeError("pcscd is not installed")
        if running_pcscd_pid() is not None:
            raise RuntimeError("another pcscd is running")
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="walletpos-pcscd-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        args = [binary, "-f"]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            help_text = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=5).stdout
            if "--disable-polkit" in help_text and os.geteuid() == 0:
                args.append("--disable-polkit")
        self.owned = True
        # vpcd's port can still be held for a while after an earlier pcscd (connections in TIME_WAIT,
        # a daemon still shutting down): pcscd then starts without the reader ("Address already in
        # use"). Try again until the port is free, up to a little over TCP's TIME_WAIT.
        deadline = time.monotonic() + PORT_BUSY_RETRY_S
        while True:
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                self.wait_ready()
                return
            except RuntimeError:
                busy = "Address already in use" in self.log_tail()
                self.stop()
                if not busy or time.monotonic() >= deadline:
                    raise
                self.log_path.write_bytes(b"")
                time.sleep(2.0)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pcscd if it was started here (SIGTERM, then SIGKILL)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        # pcscd removes its pid file and socket on a clean exit; wait for that so a new one can start.
        deadline = time.monotonic() + timeout
        while PID_FILE.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self) -> None:
        """Stop and start our pcscd (a daemon restart, as a package upgrade does)."""
        if not self.owned:
            raise RuntimeError("this pcscd was not started by the tests; not restarting it")
        self.stop()
        self.start()


def ensure_pcscd(timeout: float = 10.0) -> PcscdHandle:
    """A pcscd listing the vpcd reader: the running one, or one started here. Raises
    `PcscdUnavailable` when the stack is not installed or will not start."""
    if pcscd_binary() is None:
        raise PcscdUnavailable("pcscd is not installed (apt-get install pcscd vsmartcard-vpcd)")
    if not VPCD_CONF.exists():
        raise PcscdUnavailable(f"vsmartcard-vpcd is not configured ({VPCD_CONF} missing; "
                               "apt-get install vsmartcard-vpcd)")
    try:
        import smartcard.scard  # noqa: F401
    except ImportError as exc:
        raise PcscdUnavailable(f"pyscard is not installed: {exc}") from None
    handle = PcscdHandle(owned=False, vpcd_port=vpcd_port())
    try:
        if running_pcscd_pid() is None:
            handle.start()
        else:
            handle.wait_ready(timeout)
    except RuntimeError as exc:
        handle.stop()
        raise PcscdUnavailable(f"pcscd with the vpcd reader is not usable: {exc}") from None
    return handle
