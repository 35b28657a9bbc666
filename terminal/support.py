"""Support bundle: one zip a field technician sends when a reader, camera, network link or queue is
not working. It holds what the terminal knows about itself and nothing that could pay:

- status.json: versions, terminal status, sync status, reader and camera state, the PC/SC readers
  pcscd lists, the journal's integrity check;
- config.toml: the configuration file in use (config holds no secrets; keys live in the data dir);
- transactions.jsonl: the last transactions as the journal exports them (masked PAN, keyed token);
- logs/: the terminal's log files, every run of 12-19 digits masked once more.

Never in it: the terminal's keys, the journal database itself, sealed card data, operator PIN hashes.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import zipfile
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from terminal.errors import StorageError, WalletposError
from terminal.logs import redact
from terminal.service import Service

PACKAGES = ("walletpos", "textual", "pyscard", "nfcpy", "opencv-python-headless", "zxing-cpp", "requests",
            "cryptography")
LAST_TRANSACTIONS = 200
_DROPPED_FIELDS = frozenset({"sealed_card"})


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


def collect(service: Service) -> dict[str, Any]:
    info: dict[str, Any] = {"versions": _versions(), "status": service.status(),
                            "devices": service.device_report(), "pcsc": _pcsc_readers()}
    if service.storage_problem is None:
        try:
            info["sync"] = _jsonable(service.sync_status())
        except WalletposError as exc:
            info["sync"] = {"error": exc.message}
        report = service.verify_journal()
        info["journal_verify"] = {"ok": report.ok, "table": report.table, "first_bad_seq": report.first_bad_seq,
                                  "problem": report.problem}
    return info


def write_bundle(service: Service, out: Path | None = None) -> Path:
    """Write the bundle (default: <data dir>/support/support-<terminal>-<time>.zip) and return its path."""
    stamp = service.clock().strftime("%Y%m%dT%H%M%SZ")
    target = out or service.data_dir / "support" / f"support-{service.config.terminal.id}-{stamp}.zip"
    info = collect(service)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr("status.json", redact(json.dumps(info, indent=2, default=str, ensure_ascii=False)))
            source = Path(service.config.source)
            if source.is_file():
                bundle.writestr("config.toml", redact(source.read_text(encoding="utf-8", errors="replace")))
            else:
                bundle.writestr("config.toml", "# embedded defaults (no file): `walletpos config defaults`\n")
            if service.storage_problem is None:
                rows = [row.to_dict() for row in reversed(service.recent_transactions(LAST_TRANSACTIONS))]
                lines = [json.dumps({k: v for k, v in row.items() if k not in _DROPPED_FIELDS}, default=str,
                                    ensure_ascii=False) for row in rows]
                bundle.writestr("transactions.jsonl", redact("\n".join(lines) + ("\n" if lines else "")))
            for log_file in sorted((service.data_dir / "logs").glob("*.log*")):
                text = log_file.read_text(encoding="utf-8", errors="replace")
                bundle.writestr(f"logs/{log_file.name}", redact(text))
            bundle.writestr("README.txt", f"walletpos support bundle, terminal {service.config.terminal.id}, "
                                          f"made {datetime.now().astimezone().isoformat(timespec='seconds')}.\n"
                                          "No keys, no journal database, no sealed card data.\n")
    except OSError as exc:
        raise StorageError(f"cannot write the support bundle {target}: {exc.strerror or exc}") from None
    return target
