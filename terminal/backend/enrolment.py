"""Enrolment data (which backend, its sealing key), kept in `backend_enrolment.json` in the data
directory, mode 0600, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from terminal.errors import SecurityError, StorageError

ENROLMENT_FILE = "backend_enrolment.json"


@dataclass(frozen=True, slots=True)
class Enrolment:
    terminal_id: str
    backend_url: str
    public_key: str  # hex of the terminal's Ed25519 public key
    enrolled_at: str
    sealing_key_id: str
    sealing_public_key: bytes
    ack_public_key: bytes | None = None  # the backend's key for acknowledgements of the journal head

    def to_dict(self) -> dict[str, Any]:
        return {"terminal_id": self.terminal_id, "backend_url": self.backend_url, "public_key": self.public_key,
                "enrolled_at": self.enrolled_at,
                "sealing_key": {"key_id": self.sealing_key_id, "public_key": self.sealing_public_key.hex()},
                "ack_public_key": self.ack_public_key.hex() if self.ack_public_key else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Enrolment:
        seal = data["sealing_key"]
        key = bytes.fromhex(seal["public_key"])
        if len(key) != 32:
            raise ValueError("the sealing key must be 32 bytes")
        ack = data.get("ack_public_key")
        ack_key = bytes.fromhex(ack) if isinstance(ack, str) else None
        if ack_key is not None and len(ack_key) != 32:
            raise ValueError("the acknowledgement key must be 32 bytes")
        return cls(str(data["terminal_id"]), str(data["backend_url"]), str(data["public_key"]),
                   str(data["enrolled_at"]), str(seal["key_id"]), key, ack_key)

    @classmethod
    def load(cls, data_dir: Path) -> Enrolment | None:
        path = data_dir / ENROLMENT_FILE
        try:
            mode = path.stat().st_mode & 0o777
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from None
        if mode & 0o077:
            raise SecurityError(f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")
        try:
            return cls.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise SecurityError(f"{path} is damaged ({exc}); enrol the terminal again") from None

    def save(self, data_dir: Path) -> Path:
        """Write atomically with mode 0600 (temporary file, fsync, rename, fsync the directory)."""
        path = data_dir / ENROLMENT_FILE
        fd, tmp = tempfile.mkstemp(prefix=".enrolment-", dir=data_dir)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(data_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StorageError(f"cannot write {path}: {exc.strerror}") from None
        return path


__all__ = ["ENROLMENT_FILE", "Enrolment"]
