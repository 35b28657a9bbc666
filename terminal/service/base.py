"""The service's foundation: the parts one built terminal holds (see `terminal.bootstrap`), the basics
every operation uses (config, clock, journal, closing), the operators and the backend link (sync,
enrolment). The operations themselves are grouped by who uses them in the sibling modules; `Service`
(terminal/service/__init__.py) is all of them together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from zoneinfo import ZoneInfo

from drivers.base import CardReader
from terminal.backend import BackendClient, NotEnrolled, SupportTicket
from terminal.backoffice import BackOffice
from terminal.cardpay import CardPayments
from terminal.checkout import Checkout
from terminal.codepay import MerchantCodes
from terminal.config import Config
from terminal.core.basket import Catalogue
from terminal.core.money import Currency
from terminal.core.rules import RuleSet
from terminal.errors import StorageError, WalletposError
from terminal.journal import Journal, VerifyReport
from terminal.operators import Operators, PinCheck
from terminal.payment import Clock
from terminal.payments import Payments
from terminal.security import TerminalKeys
from terminal.sync import Enrolment, SyncReport, SyncStatus, SyncWorker, disabled_status

if TYPE_CHECKING:  # a gate's code is loaded only where a gate is built (terminal.bootstrap)
    from terminal.gate.lane import GateLane
    from terminal.transit import TransitTaps


@dataclass(frozen=True)
class QueueSummary:
    """The sync queue at a glance (status bar): depth and the oldest unsent row's time."""

    pending: int
    oldest_pending_at: datetime | None


class ServiceBase:
    """The parts of one built terminal and the basics every group of operations uses."""

    def __init__(self, *, payments: Payments, operators: Operators | None, backoffice: BackOffice | None,
                 cards: CardPayments, merchant_codes: MerchantCodes, backend: BackendClient | None = None,
                 sync: SyncWorker | None = None, checkout: Checkout | None = None,
                 on_close: Callable[[], None] | None = None, transit: Callable[[], TransitTaps] | None = None,
                 gate: GateLane | None = None) -> None:
        self.payments = payments
        self._operators = operators
        self._backoffice = backoffice
        self.cards = cards
        self.merchant_codes = merchant_codes
        self._backend = backend
        self._sync = sync
        self._checkout = checkout
        self._on_close = on_close
        self._closed = threading.Event()
        self._support_upload: threading.Thread | None = None
        self.last_support_ticket: SupportTicket | None = None
        if sync is not None:
            sync.on_support_request(self._support_requested)
        self._transit = transit
        self._gate = gate
        self._catalogue: Catalogue | None = None

    # -- basics ---------------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self.payments.config

    @property
    def data_dir(self) -> Path:
        return self.payments.data_dir

    @property
    def clock(self) -> Clock:
        return self.payments.clock

    @property
    def currency(self) -> Currency:
        return self.payments.currency

    @property
    def zone(self) -> ZoneInfo:
        return self.payments.zone

    @property
    def keys(self) -> TerminalKeys | None:
        return self.payments.keys

    @property
    def journal(self) -> Journal | None:
        """The journal (None when it could not be opened). For the terminal's own modules and tests;
        screens and commands use the operations below."""
        return self.payments.journal

    @property
    def checkout(self) -> Checkout | None:
        """The checkout (None without devices): for tests and diagnostics; screens use the
        operations below (`take_payment`, `show_merchant_qr`, ...)."""
        return self._checkout

    @property
    def sync_worker(self) -> SyncWorker | None:
        """The sync worker (None when the backend is off): for tests and diagnostics."""
        return self._sync

    @property
    def backend(self) -> BackendClient | None:
        """The backend client (None when the backend is off): for tests and diagnostics."""
        return self._backend

    @property
    def storage_problem(self) -> str | None:
        """Why the journal could not be opened at start (None when it is open)."""
        return self.payments.storage.problem

    @property
    def last_storage_error(self) -> str | None:
        """The last append that failed (cleared by the next success)."""
        return self.payments.storage.last_error

    @property
    def rule_set(self) -> RuleSet:
        """The rules in force (local config tightened by the backend's limits)."""
        return self.payments.rules.current

    def require_journal(self) -> Journal:
        return self.payments.require_journal()

    def business_date(self, moment: datetime | None = None) -> date:
        return self.payments.business_date(moment)

    def last_sync_at(self) -> datetime:
        return self.payments.last_sync_at()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._gate is not None:
            self._gate.close()
        if self._checkout is not None:
            self._checkout.close()
        if self._sync is not None:
            self._sync.close()
        elif self._backend is not None:
            self._backend.close()
        if self._backoffice is not None:
            self._backoffice.close()  # an automatic day close that runs ends before the journal closes
        journal = self.payments.journal
        if journal is not None:
            journal.close()
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def audit(self, event: str, *, actor: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        self.payments.audit(event, actor=actor, details=details)

    def housekeeping(self) -> None:
        """Periodic upkeep (the sync worker and the TUI call it every few seconds); the automatic day
        close starts from here in a thread of its own (`BackOffice.housekeeping`)."""
        self.payments.housekeeping()
        if self._backoffice is not None:
            self._backoffice.housekeeping()

    # -- operators ------------------------------------------------------------------------------

    @property
    def operators(self) -> Operators:
        if self._operators is None:
            raise StorageError(self.storage_problem or "the journal is not open", title="Cannot record")
        return self._operators

    def has_operators(self) -> bool:
        """Is at least one operator set up (the sign-in screen says how to add one when not)?"""
        return bool(self.operators.all())

    def sign_in(self, operator_id: str, pin: str) -> PinCheck:
        return self.operators.check(operator_id, pin, now=self.clock())

    # -- backend: sync and online authorisation ---------------------------------------------------

    def sync_enabled(self) -> bool:
        """Is there a backend to sync with ([backend] enabled, and the journal open)?"""
        return self._sync is not None

    def _require_sync(self) -> SyncWorker:
        if self._sync is None:
            raise NotEnrolled(self.storage_problem or "the backend is switched off ([backend] enabled = false)")
        return self._sync

    def sync_once(self, *, force: bool = True) -> SyncReport:
        """One sync cycle now (an operator's request goes ahead even while the circuit is open)."""
        return self._require_sync().run_once(force=force)

    def sync_status(self) -> SyncStatus:
        if self._sync is not None:
            return self._sync.status()
        return disabled_status(self.require_journal(), self.config.backend.url, self.clock)

    def start_sync(self) -> None:
        """Sync in the background (the TUI and the gate loop call this once)."""
        self._require_sync().start()

    def stop_sync(self) -> None:
        if self._sync is not None:
            self._sync.stop()

    def nudge_sync(self) -> None:
        """Start the next background sync cycle now."""
        if self._sync is not None:
            self._sync.nudge()

    def run_sync(self, *, timeout_s: float) -> list[SyncReport]:
        """Sync cycles with backoff until the queue is empty, a failure is final, or the time is up."""
        return self._require_sync().drain(timeout_s=timeout_s)

    def enrol_backend(self, token: str) -> Enrolment:
        return self._require_sync().client.enrol(token)

    def backend_sealing_key(self) -> bytes | None:
        """The backend's X25519 key that card data is sealed to (None until enrolled)."""
        return self.payments.sealing_key()



    @property
    def backoffice(self) -> BackOffice:
        if self._backoffice is None:
            raise StorageError(self.storage_problem or "the journal is not open", title="Cannot record")
        return self._backoffice

    def verify_journal(self, *, signatures: bool = False) -> VerifyReport:
        """The whole journal checked, read-only (`terminal.journal.chain.verify_journal`)."""
        return self.require_journal().verify(signatures=signatures, ack_key=self.backend_ack_key())

    def integrity_problem(self) -> str | None:
        """Why offline approvals are off because of the journal (its hold), or None."""
        journal = self.journal
        return journal.integrity_problem() if journal is not None else None

    def open_reader(self, device: str | None = None) -> CardReader:
        """The configured card reader (`[reader] device`, or `device`)."""
        from drivers.readers import open_reader

        return open_reader(device or self.config.reader.device)

    def device_report(self) -> dict[str, dict[str, str]]:
        """Reader and camera as their watchers see them: configured device, state and last detail."""
        out: dict[str, dict[str, str]] = {}
        checkout = self._checkout
        for kind, configured in (("reader", self.config.reader.device), ("camera", self.config.camera.source)):
            watcher = (checkout.reader if kind == "reader" else checkout.scanner) if checkout else None
            if watcher is None:
                out[kind] = {"configured": configured, "state": "not attached", "name": "", "detail": ""}
                continue
            status = watcher.status
            out[kind] = {"configured": configured, "state": status.state, "name": status.name,
                         "detail": status.detail}
        return out

    def _backend_summary(self) -> dict[str, Any]:
        """The backend as `status` names it: where, whether enrolled, and the last exchange."""
        client = self._backend
        out: dict[str, Any] = {"enabled": self.config.backend.enabled, "url": self.config.backend.url,
                               "enrolled": bool(client is not None and client.enrolled),
                               "problem": (client.enrolment_problem if client is not None else
                                           None if not self.config.backend.enabled else
                                           self.storage_problem or "no backend client")}
        if client is not None and self.journal is not None:
            try:
                sync = self.sync_status()
            except WalletposError as exc:
                out["problem"] = exc.message
                return out
            out.update(last_success_at=sync.last_success_at, last_error=sync.last_error,
                       last_error_at=sync.last_error_at, circuit=sync.breaker_state)
        return out

    def _support_requested(self) -> None:
        """The backend asked for a support bundle (its heartbeat answer); `TechnicianOps` uploads one."""

    def backend_ack_key(self) -> bytes | None:
        """The backend's key for its acknowledgements of the journal head (None until enrolled)."""
        enrolment = self._backend.enrolment if self._backend is not None else None
        return getattr(enrolment, "ack_public_key", None) if enrolment is not None else None
