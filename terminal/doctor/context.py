"""What the doctor looks at: the parts of one built terminal (`terminal.service.Service.doctor` fills
it in), and the few knobs of a run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import CardReader, ReaderStatus
from terminal.backend import BackendClient
from terminal.config import Config
from terminal.core.backend_limits import BackendLimits
from terminal.core.rules import RuleSet
from terminal.journal import VerifyReport
from terminal.payment import Clock
from terminal.sync import SyncStatus

if TYPE_CHECKING:  # OpenCV loads only when the camera is looked at
    from drivers.camera import CameraScanner


@dataclass(frozen=True)
class DoctorContext:
    config: Config
    data_dir: Path
    journal_path: Path
    clock: Clock
    storage_problem: str | None
    backend: BackendClient | None
    sync_status: Callable[[], SyncStatus]
    verify_journal: Callable[[], VerifyReport]
    integrity_problem: Callable[[], str | None]
    last_checkpoint: Callable[[], Mapping[str, Any] | None]
    last_sync_at: Callable[[], datetime]
    rules_local: RuleSet
    rules_current: RuleSet
    stored_limits: BackendLimits | None = None
    reader: CardReader | None = None  # the checkout's own reader, when it watches one
    reader_status: ReaderStatus | None = None
    scanner: CameraScanner | None = None  # the checkout's own camera, when it watches one
    camera_status: ReaderStatus | None = None
    camera_seconds: float = 1.5
    latency_requests: int = 5


def reader_kind(device: str) -> str:
    """pcsc, nfc or sim, from a `[reader] device` string."""
    return device.strip().partition(":")[0].lower() or "sim"


__all__ = ["DoctorContext", "reader_kind"]
