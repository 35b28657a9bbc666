"""Store-and-forward sync with the wallet backend: the worker (`terminal.sync.worker`) and what it
reports (`terminal.sync.report`)."""

from terminal.backend import Enrolment, PaymentStatus
from terminal.sync.report import SyncReport, SyncStatus, disabled_status
from terminal.sync.worker import SyncWorker

__all__ = ["Enrolment", "PaymentStatus", "SyncReport", "SyncStatus", "SyncWorker", "disabled_status"]
