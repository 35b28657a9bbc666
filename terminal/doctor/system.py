"""System packages and the PC/SC daemon: what the configured devices need from the machine."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import platform
import shutil
import time
from pathlib import Path

from terminal.doctor.checks import Check, advice, timed
from terminal.doctor.context import DoctorContext, reader_kind

AREA = "system"
PCSCD_PATHS = ("/usr/sbin/pcscd", "/usr/local/sbin/pcscd")


def pcscd_binary() -> str | None:
    return shutil.which("pcscd") or next((p for p in PCSCD_PATHS if os.access(p, os.X_OK)), None)


def pcscd_pid() -> int | None:
    """A running pcscd's pid (a scan of /proc), or None."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1:stat.rfind(")")]
        state = stat[stat.rfind(")") + 2:stat.rfind(")") + 3]
        if name == "pcscd" and state not in ("Z", "X"):
            return int(entry.name)
    return None


def _packages(ctx: DoctorContext) -> Check:
    kind = reader_kind(ctx.config.reader.device)
    missing: list[tuple[str, str]] = []  # (what, how to install), needed by this configuration
    optional: list[tuple[str, str]] = []
    if kind == "pcsc":
        if importlib.util.find_spec("smartcard") is None:
            missing.append(("pyscard", "pip install pyscard (apt-get install libpcsclite-dev swig first)"))
        if ctypes.util.find_library("pcsclite") is None:
            missing.append(("libpcsclite", "apt-get install libpcsclite1"))
        if pcscd_binary() is None:
            missing.append(("pcscd", "apt-get install pcscd"))
    if kind == "nfc":
        if importlib.util.find_spec("nfc") is None:
            missing.append(("nfcpy", "pip install nfcpy"))
        if ctypes.util.find_library("usb-1.0") is None:
            missing.append(("libusb", "apt-get install libusb-1.0-0"))
    camera = ctx.config.camera.source.strip()
    if camera:
        for module, package in (("cv2", "opencv-python-headless"), ("zxingcpp", "zxing-cpp")):
            if importlib.util.find_spec(module) is None:
                missing.append((package, f"pip install {package}"))
        if ctypes.util.find_library("zbar") is None:
            optional.append(("libzbar", "apt-get install libzbar0"))
    figure = f"Python {platform.python_version()}, reader {kind}, camera {camera or 'none'}"
    if missing:
        names = ", ".join(name for name, _ in missing)
        return Check(AREA, "packages", "fail", f"missing: {names}", f"the configured devices need {names}",
                     measured={"missing": [n for n, _ in missing]},
                     **advice("install_packages", how="; ".join(how for _, how in missing)))
    if optional:
        return Check(AREA, "packages", "warn", f"missing: {optional[0][0]}",
                     "without zbar the camera decodes with zxing-cpp alone (fewer damaged codes are read)",
                     measured={"missing": [n for n, _ in optional]}, **advice("install_packages", how=optional[0][1]))
    return Check(AREA, "packages", "pass", figure, "everything the configured devices need is installed")


def _pcscd(ctx: DoctorContext) -> Check:
    kind = reader_kind(ctx.config.reader.device)
    if kind != "pcsc":
        return Check(AREA, "pcscd", "skip", f"not used (reader {ctx.config.reader.device})")
    binary = pcscd_binary()
    if binary is None:
        return Check(AREA, "pcscd", "fail", "not installed", "the reader is a PC/SC reader and pcscd is missing",
                     **advice("install_packages", how="apt-get install pcscd"))
    pid = pcscd_pid()
    try:
        from smartcard import scard
    except ImportError:
        return Check(AREA, "pcscd", "fail", "pyscard missing", "the PC/SC client library cannot be loaded",
                     **advice("install_packages", how="pip install pyscard"))
    t0 = time.perf_counter()
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        text = str(scard.SCardGetErrorMessage(hresult)).strip().rstrip(".")
        state = f"running as pid {pid} but not answering" if pid else "not running"
        return Check(AREA, "pcscd", "fail", state, f"the PC/SC service does not answer: {text}",
                     measured={"pid": pid}, **advice("start_pcscd"))
    try:
        hresult, names = scard.SCardListReaders(context, [])
    finally:
        scard.SCardReleaseContext(context)
    ms = (time.perf_counter() - t0) * 1000
    readers = list(names) if hresult == scard.SCARD_S_SUCCESS else []
    running = f"pid {pid}" if pid else "socket-activated"
    return Check(AREA, "pcscd", "pass", f"running ({running}), {len(readers)} reader(s)",
                 f"answered in {ms:.1f} ms; readers: {', '.join(readers) or 'none'}",
                 measured={"pid": pid, "readers": readers, "answer_ms": round(ms, 2)})


def check_system(ctx: DoctorContext) -> list[Check]:
    return [timed(lambda: _packages(ctx)), timed(lambda: _pcscd(ctx))]


__all__ = ["check_system", "pcscd_binary", "pcscd_pid"]
