"""The day close: X and Z reports of the open batch (counted by SQL), a close approved by a
supervisor, shift ends, and the automatic close of an unattended terminal at `[day_close] auto_at`
(once per scheduled moment, one close at a time on a data directory). `terminal.backoffice.BackOffice`
builds on it with refunds, voids, look-ups and receipts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from terminal.core.reports import DayReport, report_of_totals
from terminal.errors import StorageError, WalletposError
from terminal.i18n import reason
from terminal.journal import parse_utc, utc_text
from terminal.operators import Operators
from terminal.payments import Payments
from terminal.receipts import ReportHeader, report_lines

log = logging.getLogger("walletpos.backoffice")

AUTO_CLOSER = "auto"  # who closed a day closed automatically ([day_close] auto_at)

AUTO_CLOSE_META = "auto_close_at"  # the last moment of the automatic close handled (UTC)

CLOSE_LOCK_FILE = "day-close.lock"  # in the data directory: one day close at a time

AUTO_CLOSE_RETRY = timedelta(minutes=5)  # after a close that failed (a full disk), try again this much later

AUTO_CLOSE_BUSY_RETRY = timedelta(seconds=30)  # another close was running: look again this much later

class DayCloseRefused(WalletposError):
    """The day cannot be closed: `problems` are reason codes (words: `terminal.i18n.reason`)."""

    title = "Day close refused"

    def __init__(self, message: str, problems: tuple[str, ...]) -> None:
        super().__init__(message)
        self.problems = problems

    def words(self, locale: str) -> str:
        return "; ".join(reason(locale, p) for p in self.problems)

@dataclass(frozen=True)
class AutoCloseResult:
    """What the automatic day close did for the moment `scheduled_for`: `closed` (the Z-report and its
    files), `nothing_to_close` (an empty batch is not closed), `already_closed` (by this process
    before, another process, or before a restart), or `busy` (another close holds the lock)."""

    outcome: Literal["closed", "nothing_to_close", "already_closed", "busy"]
    scheduled_for: datetime
    report: DayReport | None = None
    paths: tuple[Path, ...] = ()

def last_scheduled(now: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The last moment, at or before `now`, when the local clock of `zone` read `at` (UTC)."""
    local = now.astimezone(zone)
    moment = datetime.combine(local.date(), at, tzinfo=zone)
    if moment > now:
        moment = datetime.combine(local.date() - timedelta(days=1), at, tzinfo=zone)
    return moment.astimezone(now.tzinfo)

def next_scheduled(after: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first moment after `after` when the local clock of `zone` reads `at`."""
    day = after.astimezone(zone).date()
    while True:
        moment = datetime.combine(day, at, tzinfo=zone)
        if moment > after:
            return moment.astimezone(after.tzinfo)
        day += timedelta(days=1)


class DayClose:
    """Reports and the day close over the payments' journal and the operators' PINs."""

    def __init__(self, payments: Payments, operators: Operators) -> None:
        self.payments = payments
        self.operators = operators
        self._auto_lock = threading.Lock()
        self._auto_next: datetime | None = None  # no look at the journal before then
        self._auto_thread: threading.Thread | None = None
        self._closed = False

    def last_close(self) -> tuple[int, int]:
        """(last closed sequence number, last Z number)."""
        journal = self.payments.require_journal()
        return int(journal.meta("z_last_seq") or 0), int(journal.meta("z_number") or 0)

    def shift_ends(self) -> list[int]:
        """The last sequence number of each shift ended since the last Z, in order."""
        value = self.payments.require_journal().meta("shift_ends")
        ends = json.loads(value) if value else []
        return [int(e) for e in ends if isinstance(e, int)]

    def _report(self, z_number: int | None, until: int | None = None) -> DayReport:
        """The report of the open batch (up to `until`), counted by the journal with SQL: the same
        report as the batch's rows added one by one (`terminal.core.reports.build_report`), in time
        and memory that do not depend on the rows' size, only (lightly) on their number."""
        last_seq, _ = self.last_close()
        ends = tuple(self.shift_ends())
        totals = self.payments.require_journal().txns.batch_totals(last_seq, until, ends)
        return report_of_totals(totals, self.payments.currency.alpha, z_number, ends)

    def day_report(self) -> DayReport:
        """The X-report: everything since the last Z, nothing closed."""
        return self._report(None)

    def approver(self, operator: str | None, supervisor_id: str | None, supervisor_pin: str | None,
                 purpose: str) -> str:
        """The supervisor who approves a day close or a shift end: with a PIN, checked (and counted
        towards lockout); without one, the signed-in operator, who must be an active supervisor.
        Raises `DayCloseRefused` with the reason."""
        who = supervisor_id or operator
        if not who:
            raise DayCloseRefused("a supervisor must approve", ("supervisor_pin_required",))
        if supervisor_pin is not None:
            check = self.operators.check(who, supervisor_pin, now=self.payments.clock(), purpose=purpose,
                                         require_role="supervisor")
            if not check.ok:
                code = f"supervisor_{check.reason}"
                raise DayCloseRefused(reason("en", code), (code,))
            return who
        record = self.payments.require_journal().operators.record(who)
        if record is None:
            raise DayCloseRefused(reason("en", "supervisor_unknown_operator"), ("supervisor_unknown_operator",))
        if record["role"] != "supervisor":
            raise DayCloseRefused(reason("en", "supervisor_not_a_supervisor"), ("supervisor_not_a_supervisor",))
        if not record["active"]:
            raise DayCloseRefused(reason("en", "supervisor_inactive"), ("supervisor_inactive",))
        return who

    def end_shift(self, *, operator: str | None, supervisor_id: str | None = None,
                  supervisor_pin: str | None = None) -> int:
        """End the current shift (approved like a day close); returns its number. The shift totals of
        the X/Z reports are cut here."""
        approver = self.approver(operator, supervisor_id, supervisor_pin, "shift_end")
        journal = self.payments.require_journal()
        with self.closing(wait=True):  # not while a day close cuts the batch
            ends = self.shift_ends()
            newest = journal.txns.newest()
            last_seq, _ = self.last_close()
            start = ends[-1] if ends else last_seq
            if newest is None or newest.seq <= start:
                raise DayCloseRefused("nothing was recorded in this shift", ("nothing_in_shift",))
            journal.set_meta({"shift_ends": json.dumps([*ends, newest.seq])})
        self.payments.audit("shift_ended", actor=approver, details={"shift": len(ends) + 1, "last_seq": newest.seq,
                                                                   "operator": operator})
        return len(ends) + 1

    def close_day(self, *, operator: str | None, supervisor_id: str | None = None, supervisor_pin: str | None = None,
                  locale: str | None = None) -> tuple[DayReport, list[Path]]:
        """Close the batch: the Z-report of everything since the last Z, written as JSON and as text in
        `locale` (the terminal's language), approved by a supervisor (see `approver`). Refused
        (`DayCloseRefused`) when nothing was recorded since the last Z."""
        journal = self.payments.require_journal()
        if operator is not None and journal.operators.record(operator) is None:
            raise DayCloseRefused(f"no operator {operator}", ("operator_unknown",))
        approver = self.approver(operator, supervisor_id, supervisor_pin, "day_close")
        with self.closing(wait=True):
            last_seq, z_number = self.last_close()
            newest = journal.txns.newest()
            if newest is None or newest.seq <= last_seq:
                raise DayCloseRefused(f"nothing was recorded since Z-report {z_number}" if z_number
                                      else "nothing was recorded yet", ("nothing_to_close",))
            return self._close(approver, operator, locale, newest.seq)

    @contextlib.contextmanager
    def closing(self, *, wait: bool) -> Iterator[bool]:
        """The data directory's day-close lock, held while a Z is decided, written and recorded: one
        close at a time across the threads and processes of a terminal (a supervisor's close, the
        automatic one, a second walletpos on the same data directory). Yields False when `wait` is
        False and another close holds it. The lock goes with the process that holds it."""
        folder = self.payments.data_dir
        try:
            fd = os.open(folder / CLOSE_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open the day-close lock in {folder}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    def _close(self, approver: str, operator: str | None, locale: str | None, until: int, *,
               scheduled_for: datetime | None = None) -> tuple[DayReport, list[Path]]:
        """Write the Z-report of the open batch up to `until` and record the close (under `closing`)."""
        journal = self.payments.require_journal()
        last_seq, z_number = self.last_close()
        report = self._report(z_number + 1, until=until)
        now = self.payments.clock()
        config = self.payments.config
        locale = locale or config.display.locale
        folder = self.payments.data_dir / "reports"
        stem = f"Z{report.z_number:04d}-{self.payments.business_date(now).isoformat()}"
        data = {**report.to_dict(), "terminal_id": config.terminal.id, "closed_at": now.isoformat(),
                "closed_at_local": now.astimezone(config.terminal.zone).isoformat(), "closed_by": approver,
                "operator": operator, "locale": locale}
        header = ReportHeader(terminal_id=config.terminal.id, printed_at=now, closed_by=approver, operator=operator)
        names = {str(r["id"]): str(r["name"]) for r in self.operators.records()}
        text = "\n".join(report_lines(report, config, locale, header, names)) + "\n"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            paths = [self._write(folder / f"{stem}.json", json.dumps(data, indent=2, ensure_ascii=False) + "\n"),
                     self._write(folder / f"{stem}.txt", text)]
        except OSError as exc:
            raise StorageError(f"cannot write the day report to {folder}: {exc.strerror}") from None
        closed_seq = report.last_seq or last_seq
        meta = {"z_last_seq": str(closed_seq), "z_number": str(report.z_number),
                # a shift ended after the cut of an automatic close belongs to the next batch
                "shift_ends": json.dumps([e for e in self.shift_ends() if e > closed_seq])}
        details: dict[str, Any] = {"z_number": report.z_number, "net": report.net, "first_seq": report.first_seq,
                                   "last_seq": report.last_seq, "operator": operator}
        if scheduled_for is not None:
            meta[AUTO_CLOSE_META] = utc_text(scheduled_for)
            details.update(automatic=True, scheduled_for=utc_text(scheduled_for))
        journal.set_meta(meta)
        self.payments.audit("day_closed", actor=approver, details=details)
        return report, paths

    def auto_close(self, at: time) -> AutoCloseResult:
        """The automatic day close for the moment of `at` (local time) last passed: the batch up to
        the last row written before that moment is closed by AUTO_CLOSER, once (the moment handled is
        kept in the journal: a restart, a second process or a later start do not close it again); a
        terminal that was off then closes the missed day now; an empty batch is not closed (the
        moment is marked handled and audited). Rows written after the moment, a tap during this close
        among them, are the next batch. Returns at once with `busy` while another close runs."""
        journal = self.payments.require_journal()
        now = self.payments.clock()
        due = last_scheduled(now, at, self.payments.zone)
        with self.closing(wait=False) as held:
            if not held:
                return AutoCloseResult("busy", due)
            done = journal.meta(AUTO_CLOSE_META)
            if done and parse_utc(done) >= due:
                return AutoCloseResult("already_closed", due)
            last_seq, z_number = self.last_close()
            # the last row written before the moment: walked back from the newest (index of the key)
            before = journal.txns.rows("WHERE seq > ? AND +created_at < ?", (last_seq, utc_text(due)),
                                       order="seq DESC", limit=1)
            if not before:
                journal.set_meta({AUTO_CLOSE_META: utc_text(due)})
                self.payments.audit("day_close_skipped", actor=AUTO_CLOSER, details={
                    "scheduled_for": utc_text(due), "reason": "nothing_to_close", "z_number": z_number})
                log.info("automatic day close for %s: nothing recorded since Z-report %d", due.isoformat(), z_number)
                return AutoCloseResult("nothing_to_close", due)
            report, paths = self._close(AUTO_CLOSER, None, None, before[0].seq, scheduled_for=due)
        log.info("automatic day close for %s: Z-report %s, rows %s to %s", due.isoformat(), report.z_number,
                 report.first_seq, report.last_seq)
        return AutoCloseResult("closed", due, report, tuple(paths))

    def housekeeping(self) -> None:
        """Upkeep between payments (the gate lane's upkeep and `Service.housekeeping`, which the TUI
        runs, call it every few seconds): when `[day_close] auto_at` is set and its moment has passed
        since the last look, the automatic day close (`auto_close`) runs in a thread of its own, so
        neither a tap nor the caller waits for it. Otherwise this reads the clock and returns."""
        at = self.payments.config.day_close.auto_time
        if at is None:
            return
        now = self.payments.clock()
        with self._auto_lock:
            if self._closed or (self._auto_next is not None and now < self._auto_next):
                return
            if self._auto_thread is not None and self._auto_thread.is_alive():
                return
            self._auto_next = now + AUTO_CLOSE_BUSY_RETRY  # until the run says when next
            thread = threading.Thread(target=self._auto_close_job, args=(at,), name="walletpos-day-close",
                                      daemon=True)
            self._auto_thread = thread
        thread.start()

    def _auto_close_job(self, at: time) -> None:
        now = self.payments.clock()
        try:
            result = self.auto_close(at)
        except WalletposError as exc:
            log.warning("automatic day close failed, trying again in %s: %s", AUTO_CLOSE_RETRY, exc.message)
            later = now + AUTO_CLOSE_RETRY
        except Exception:  # a bug must not end the upkeep for good: logged, tried again later
            log.exception("automatic day close failed, trying again in %s", AUTO_CLOSE_RETRY)
            later = now + AUTO_CLOSE_RETRY
        else:
            later = (now + AUTO_CLOSE_BUSY_RETRY if result.outcome == "busy"
                     else next_scheduled(result.scheduled_for, at, self.payments.zone))
        with self._auto_lock:
            self._auto_next = later

    def wait_auto_close(self, timeout: float | None = None) -> bool:
        """Wait for a running automatic close to end; True when none runs (any more)."""
        thread = self._auto_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self, timeout: float = 30.0) -> None:
        """No automatic close starts any more; one that runs is waited for (before the journal closes)."""
        with self._auto_lock:
            self._closed = True
        self.wait_auto_close(timeout)

    @staticmethod
    def _write(path: Path, text: str) -> Path:
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path
