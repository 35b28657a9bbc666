"""What a field technician uses: the doctor, a test tap, kept failed taps and their replay, the
camera preview, the log level and the support bundle."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terminal.backend import NotEnrolled, SupportTicket
from terminal.core.money import Money
from terminal.errors import StorageError, WalletposError
from terminal.logs import current_level, set_level
from terminal.service.records import RecordsOps
from terminal.tapstore import SavedTap, TapCheck, load_trace_file

# The technician's tools (the doctor, the camera preview, tap replay, the support bundle) are loaded
# when a technician first uses them: a cashier's or a gate's start does not pay for them (~40 ms).
# The import-graph test counts these imports like any other.
if TYPE_CHECKING:
    from terminal.doctor import DoctorContext, DoctorReport
    from terminal.doctor.camera import PreviewFrame

log = logging.getLogger("walletpos.service")


class TechnicianOps(RecordsOps):
    """The technician's toolkit over the running terminal (which reads the records: a support bundle
    holds the status and the last transactions)."""

    # -- technician: doctor, test tap, failed taps, camera, log level, support bundle ---------------

    def _doctor_context(self, *, camera_seconds: float, latency_requests: int) -> DoctorContext:
        from terminal.doctor import DoctorContext

        journal = self.journal
        checkout = self._checkout
        reader = checkout.reader if checkout is not None else None
        camera = checkout.scanner if checkout is not None else None
        return DoctorContext(
            config=self.config, data_dir=self.data_dir,
            journal_path=journal.path if journal is not None else self.data_dir / "journal.sqlite3",
            clock=self.clock, storage_problem=self.storage_problem, backend=self._backend,
            sync_status=self.sync_status, verify_journal=self.verify_journal,
            integrity_problem=self.integrity_problem, last_checkpoint=self.last_checkpoint,
            last_sync_at=self.last_sync_at, rules_local=self.payments.rules.local, rules_current=self.rule_set,
            stored_limits=self._sync.stored_limits() if self._sync is not None else None,
            reader=reader.device if reader is not None else None,
            reader_status=reader.status if reader is not None else None,
            scanner=camera.device if camera is not None else None,
            camera_status=camera.status if camera is not None else None,
            camera_seconds=camera_seconds, latency_requests=latency_requests)

    def doctor(self, areas: Iterable[str] | None = None, *, camera_seconds: float = 1.5,
               latency_requests: int = 5) -> DoctorReport:
        """Check every part of the terminal (`terminal.doctor`): areas side by side, each check with
        its figure, time and, when it fails, the one thing to do next."""
        from terminal.doctor import run_doctor

        return run_doctor(self._doctor_context(camera_seconds=camera_seconds, latency_requests=latency_requests),
                          areas)

    def last_checkpoint(self) -> dict[str, Any] | None:
        """The journal's last signed checkpoint (the rows verified up to it), None before the first."""
        return self.require_journal().chain.last_checkpoint()

    def camera_preview(self, *, stop: threading.Event, show: Callable[[PreviewFrame], None], columns: int = 40,
                       rows: int = 12) -> None:
        """The camera as half-block pictures with sharpness and decode rate, until `stop` (the
        checkout's camera is borrowed: call it while no sale runs). Raises ReaderUnavailableError."""
        from terminal.doctor.camera import preview as camera_preview

        camera_preview(self._doctor_context(camera_seconds=0, latency_requests=0), stop=stop, show=show,
                       columns=columns, rows=rows)

    def test_tap(self, amount: Money | None = None, *, cancel: threading.Event, timeout_s: float = 30.0,
                 device: str | None = None) -> TapCheck:
        """Wait for a card and read it with the EMV kernel, keeping every command and answer: nothing is
        journaled, sealed or sent (a card that cannot be read is kept as a failed tap). The checkout's
        reader when it has one, else the configured reader (or `device`)."""
        amount = amount or Money(100, self.currency)
        checkout = self._checkout
        if device is None and checkout is not None and checkout.reader is not None:
            reader_name = checkout.reader.status.name or self.config.reader.device
            found = checkout.with_next_card(
                lambda session: self.cards.check_tap(session, amount, reader=reader_name),
                cancel=cancel, timeout_s=timeout_s)
            return found if found is not None else TapCheck("no_card", "no card was presented", reader_name)
        from drivers.base import ReaderUnavailableError

        spec = device or self.config.reader.device
        try:
            reader = self.open_reader(spec)
        except ReaderUnavailableError as exc:
            return TapCheck("reader_unavailable", exc.message, spec)
        with reader:
            deadline = time.monotonic() + timeout_s
            try:
                while not cancel.is_set() and time.monotonic() < deadline:
                    session = reader.wait_for_card(min(0.2, max(0.0, deadline - time.monotonic())))
                    if session is not None:
                        started = time.perf_counter()
                        with session:
                            return self.cards.check_tap(session, amount, reader=reader.name, started=started)
            except ReaderUnavailableError as exc:
                return TapCheck("reader_unavailable", exc.message, reader.name)
        return TapCheck("no_card", "no card was presented", reader.name)

    def failed_taps(self) -> list[SavedTap]:
        """The kept failed taps (redacted traces), newest first."""
        return self.cards.failed_taps.list()

    def failed_tap_files(self) -> list[Path]:
        return self.cards.failed_taps.paths()

    def replay_tap(self, trace: str | Path | Mapping[str, Any], amount: Money | None = None) -> TapCheck:
        """Read a recorded card again through the kernel: a kept failed tap (its name), a trace file,
        or a trace item. Nothing is journaled; a replay is never kept as a failed tap."""
        if isinstance(trace, Mapping):
            item, label = dict(trace), str(trace.get("label", "trace"))
        elif isinstance(trace, str) and "/" not in trace and not trace.startswith("."):
            item, label = self.cards.failed_taps.load(trace), trace
        else:
            item, label = load_trace_file(Path(trace)), Path(trace).name
        from terminal.tapreplay import ReplayTransport

        meta = item.get("walletpos") or {}
        if amount is None and isinstance(meta.get("amount"), int) and meta.get("currency") == self.currency.alpha:
            amount = Money(meta["amount"], self.currency)
        transport = ReplayTransport(item)
        return self.cards.check_tap(transport, amount or Money(100, self.currency), reader=f"replay of {label}",
                                    source=f"replay:{label}")

    def log_level(self) -> str:
        return current_level()

    def set_log_level(self, level: str, *, actor: str | None = None) -> str:
        """Change the log level now, until the next start (the config's level then applies again)."""
        old = current_level()
        new = set_level(level)
        if new != old:
            try:
                self.audit("log_level", actor=actor, details={"from": old, "to": new})
            except StorageError as exc:
                log.warning("log level change not recorded: %s", exc.message)
        return new

    def support_bundle(self, out: Path | None = None) -> Path:
        """A support bundle in the data directory (or at `out`): `terminal.support`."""
        from terminal.support import write_bundle

        return write_bundle(self, out)

    def support_bundle_to_drive(self, drive: Path | None = None) -> Path:
        """A support bundle on a removable drive (the first one mounted when `drive` is None)."""
        from terminal.support import removable_drives, write_to_drive

        if drive is None:
            drives = removable_drives()
            if not drives:
                raise StorageError("no removable drive is mounted; plug in a USB drive (or give its path)")
            drive = drives[0]
        return write_to_drive(self, drive)

    def upload_support_bundle(self, reason: str = "technician") -> SupportTicket:
        """Send a support bundle to the backend; the ticket id is what the technician reads out."""
        client = self._backend
        if client is None:
            raise NotEnrolled(self.storage_problem or "the backend is switched off ([backend] enabled = false); "
                              "write the bundle to a drive instead")
        from terminal.support import bundle_name, make_bundle

        data = make_bundle(self)
        ticket = client.upload_support_bundle(data, file_name=bundle_name(self), reason=reason)
        self.last_support_ticket = ticket
        try:
            self.audit("support_bundle_sent", details={"ticket": ticket.ticket, "reason": reason,
                                                       "size": ticket.size})
        except StorageError as exc:
            log.warning("support bundle upload not recorded: %s", exc.message)
        return ticket

    def _support_requested(self) -> None:
        """The heartbeat said support asks for a bundle: send one in the background (once at a time)."""
        running = self._support_upload
        if running is not None and running.is_alive():
            return

        def send() -> None:
            try:
                ticket = self.upload_support_bundle("backend_request")
                log.info("support bundle sent at the backend's request: ticket %s", ticket.ticket)
            except WalletposError as exc:
                log.warning("support bundle asked for by the backend not sent: %s", exc.message)

        self._support_upload = threading.Thread(target=send, name="walletpos-support-bundle", daemon=True)
        self._support_upload.start()
