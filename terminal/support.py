"""Support bundle: one zip a field technician gets to support when a reader, camera, network link or
queue is not working. It holds what the terminal knows about itself and nothing that could pay:

- status.json: versions, terminal status, sync status, reader and camera state, the PC/SC readers
  pcscd lists, the journal's integrity check, the kept failed taps;
- doctor.json: `walletpos doctor`'s checks of the system, the backend link, the clock, the journal,
  the queue and the limits (the reader and the camera are not probed: a bundle can be made while a
  sale reads them; their state is in status.json);
- config.toml: the configuration file in use (config holds no secrets; keys live in the data dir);
- transactions.jsonl: the last transactions as the journal exports them (masked PAN, keyed token);
- logs/: the terminal's log files;
- traces/: the kept failed taps (already redacted by the terminal, `terminal.core.traces`).

Every text in it passes `terminal.logs.redact` (`terminal.core.cardmask.mask_card_numbers`: card
numbers, Luhn-checked, also grouped or as track 2), so hashes, signatures and ids stay readable.
Never in it: the terminal's keys, the journal database itself, sealed card data, operator PIN hashes.

Where it goes: a file in the data directory (`write_bundle`), a removable drive
(`write_to_drive`; `removable_drives` finds the mounted ones), or the backend
(`make_bundle` + `BackendClient.upload_support_bundle`, answered with a ticket id to read out).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import zipfile
from collections.abc import Iterable
from datetime import datetime
from importlib import metadata
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

from terminal.config import Config
from terminal.doctor import DoctorReport
from terminal.errors import StorageError, WalletposError
from terminal.journal import TxnRow, VerifyReport
from terminal.logs import redact
from terminal.payment import Clock
from terminal.sync import SyncStatus

PACKAGES = ("walletpos", "textual", "pyscard", "nfcpy", "opencv-python-headless", "zxing-cpp", "requests",
            "cryptography")
LAST_TRANSACTIONS = 200
BUNDLE_AREAS = ("system", "backend", "clock", "journal", "queue", "limits")
_DROPPED_FIELDS = frozenset({"sealed_card", "sealed_card_sha256"})
REMOVABLE_ROOTS = ("/media/", "/run/media/", "/mnt/")


class BundleSource(Protocol):
    """What a bundle reads of the terminal (`terminal.service.Service` is one)."""

    @property
    def config(self) -> Config: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def storage_problem(self) -> str | None: ...

    def status(self) -> dict[str, Any]: ...

    def device_report(self) -> dict[str, dict[str, str]]: ...

    def sync_status(self) -> SyncStatus: ...

    def verify_journal(self, *, signatures: bool = False) -> VerifyReport: ...

    def recent_transactions(self, limit: int = 50, *, search: str | None = None) -> list[TxnRow]: ...

    def doctor(self, areas: Iterable[str] | None = None) -> DoctorReport: ...

    def failed_tap_files(self) -> list[Path]: ...


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _pcsc_readers() -> dict[str, Any]:
    try:
        from drivers.pcsc import PcscReader

        reader = PcscReader("")
        try:
            return {"readers": reader.readers()}
        finally:
            reader.close()
    except (WalletposError, ImportError, OSError) as exc:
        return {"error": str(exc)}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def collect(source: BundleSource) -> dict[str, Any]:
    info: dict[str, Any] = {"versions": _versions(), "status": source.status(),
                            "devices": source.device_report(), "pcsc": _pcsc_readers(),
                            "failed_taps": [p.name for p in source.failed_tap_files()]}
    if source.storage_problem is None:
        try:
            info["sync"] = _jsonable(source.sync_status())
        except WalletposError as exc:
            info["sync"] = {"error": exc.message}
        report = source.verify_journal()
        info["journal_verify"] = {"ok": report.ok, "table": report.table, "first_bad_seq": report.first_bad_seq,
                                  "problem": report.problem}
    return info


def bundle_name(source: BundleSource) -> str:
    stamp = source.clock().strftime("%Y%m%dT%H%M%SZ")
    return f"support-{source.config.terminal.id}-{stamp}.zip"


def make_bundle(source: BundleSource, *, doctor: bool = True) -> bytes:
    """The bundle's bytes (see the module docstring)."""
    info = collect(source)
    out = BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("status.json", redact(json.dumps(info, indent=2, default=str, ensure_ascii=False)))
        if doctor:
            report = source.doctor(BUNDLE_AREAS)
            bundle.writestr("doctor.json", redact(json.dumps(report.to_dict(), indent=2, default=str,
                                                             ensure_ascii=False)))
        config_file = Path(source.config.source)
        if config_file.is_file():
            bundle.writestr("config.toml", redact(config_file.read_text(encoding="utf-8", errors="replace")))
        else:
            bundle.writestr("config.toml", "# embedded defaults (no file): `walletpos config defaults`\n")
        if source.storage_problem is None:
            rows = [row.to_dict() for row in reversed(source.recent_transactions(LAST_TRANSACTIONS))]
            lines = [json.dumps({k: v for k, v in row.items() if k not in _DROPPED_FIELDS}, default=str,
                                ensure_ascii=False) for row in rows]
            bundle.writestr("transactions.jsonl", redact("\n".join(lines) + ("\n" if lines else "")))
        for log_file in sorted((source.data_dir / "logs").glob("*.log*")):
            text = log_file.read_text(encoding="utf-8", errors="replace")
            bundle.writestr(f"logs/{log_file.name}", redact(text))
        for trace in source.failed_tap_files():
            bundle.writestr(f"traces/{trace.name}", redact(trace.read_text(encoding="utf-8", errors="replace")))
        bundle.writestr("README.txt", f"walletpos support bundle, terminal {source.config.terminal.id}, "
                                      f"made {datetime.now().astimezone().isoformat(timespec='seconds')}.\n"
                                      "No keys, no journal database, no sealed card data; card numbers masked.\n")
    return out.getvalue()


def _write(path: Path, data: bytes, *, sync: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())


def write_bundle(source: BundleSource, out: Path | None = None) -> Path:
    """Write the bundle (default: <data dir>/support/support-<terminal>-<time>.zip) and return its path."""
    target = out or source.data_dir / "support" / bundle_name(source)
    try:
        data = make_bundle(source)
        _write(target, data, sync=False)
    except OSError as exc:
        raise StorageError(f"cannot write the support bundle {target}: {exc.strerror or exc}") from None
    return target


def removable_drives(mounts: str | None = None, sys_block: Path = Path("/sys/block")) -> list[Path]:
    """Mounted drives a technician can take away: mount points under /media, /run/media or /mnt, or
    whose block device the kernel marks removable (a USB stick), from /proc/mounts (`mounts`: its text)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text(encoding="utf-8")
        except OSError:
            return []
    found: list[Path] = []
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith("/dev/"):
            continue
        device, point = parts[0], parts[1].replace("\\040", " ")
        disk = Path(device).name.rstrip("0123456789")
        if disk.startswith(("nvme", "mmcblk")):
            disk = disk.rstrip("p")
        flag = sys_block / disk / "removable"
        removable = False
        with contextlib.suppress(OSError):
            removable = flag.read_text().strip() == "1"
        if removable or point.startswith(REMOVABLE_ROOTS):
            found.append(Path(point))
    return found


def write_to_drive(source: BundleSource, drive: Path) -> Path:
    """Write the bundle onto a removable drive (its mount point, or a folder on it) and flush it to the
    device, so the drive can be pulled as soon as this returns."""
    if not drive.is_dir():
        raise StorageError(f"{drive} is not a mounted drive or folder; plug in the drive and check that it is "
                           "mounted")
    if not os.access(drive, os.W_OK):
        raise StorageError(f"{drive} is read-only; use another drive or unlock it")
    target = drive / bundle_name(source)
    try:
        _write(target, make_bundle(source), sync=True)
    except OSError as exc:
        raise StorageError(f"cannot write the support bundle to {drive}: {exc.strerror or exc}") from None
    return target


__all__ = ["BUNDLE_AREAS", "BundleSource", "bundle_name", "collect", "make_bundle", "removable_drives",
           "write_bundle", "write_to_drive"]
