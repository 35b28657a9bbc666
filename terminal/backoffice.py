"""Refunds, voids, day close and receipts: the cashier's back-office operations over the journal.

Refunds and voids need a supervisor PIN, checked (and counted towards lockout) by `Operators`; the
pure checks are `terminal.core.rules.check_refund` / `check_void`. An allowed refund or void is a
signed journal row (kind refund/void, `reference` = the original sale) that syncs like any other;
the backend returns the money to the card or wallet of the original payment, so the card does not
need to be present. A refused attempt stores no transaction, only an audit entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from terminal.core.basket import taxes_of
from terminal.core.money import Money
from terminal.core.reports import DayReport, report_of_totals
from terminal.core.rules import OriginalSale, RefundCheck, RefundProblem, check_refund, check_void
from terminal.errors import StorageError, WalletposError
from terminal.i18n import reason
from terminal.journal import NewTransaction, TxnRow, parse_utc, utc_text
from terminal.operators import Operators, PinCheck
from terminal.payments import Payments
from terminal.receipts import ReportHeader, receipt_lines, report_lines

log = logging.getLogger("walletpos.backoffice")

SALE_KINDS = ("sale", "fare")
AUTO_CLOSER = "auto"  # who closed a day closed automatically ([day_close] auto_at)
AUTO_CLOSE_META = "auto_close_at"  # the last moment of the automatic close handled (UTC)
CLOSE_LOCK_FILE = "day-close.lock"  # in the data directory: one day close at a time
AUTO_CLOSE_RETRY = timedelta(minutes=5)  # after a close that failed (a full disk), try again this much later
AUTO_CLOSE_BUSY_RETRY = timedelta(seconds=30)  # another close was running: look again this much later
SALE_PARTS_WINDOW = 200  # rows before and after a part of a split sale where its other parts are
_DATED_REF = re.compile(r"\s*(\d{4}-\d{2}-\d{2}|\d{8})\s*[/ #-]\s*#?(\d{1,6})\s*")


@dataclass(frozen=True)
class BackOfficeResult:
    ok: bool
    problems: tuple[str, ...] = ()
    row: TxnRow | None = None
    supervisor: PinCheck | None = None
    refundable: Money | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def message(self, locale: str = "en") -> str:
        return "; ".join(reason(locale, p) for p in self.problems)


@dataclass(frozen=True)
class Lookup:
    """What a typed reference finds: one row, or several (`candidates`: the reference is ambiguous,
    e.g. the same short reference on several days), or nothing."""

    row: TxnRow | None
    candidates: tuple[TxnRow, ...] = ()

    @property
    def problem(self) -> str | None:
        if self.row is not None:
            return None
        return "ambiguous_reference" if len(self.candidates) > 1 else "not_found"


@dataclass(frozen=True)
class SaleMark:
    """What became of a sale since: voided, or refunded (how much in all)."""

    voided: bool = False
    refunded: int = 0  # minor units


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


def parse_reference(text: str) -> tuple[date | None, str] | None:
    """A short reference as typed: '0042', '#42', '2026-11-20/0042', '20261120-0042' -> (date or None,
    '0042'); None when `text` is not a short reference."""
    text = text.strip()
    m = _DATED_REF.fullmatch(text)
    if m:
        day = m.group(1)
        try:
            when = date.fromisoformat(day if "-" in day else f"{day[:4]}-{day[4:6]}-{day[6:]}")
        except ValueError:
            return None
        return when, m.group(2).zfill(4)
    bare = text.lstrip("#")
    if bare.isdigit() and bare.isascii() and 1 <= len(bare) <= 6:
        return None, bare.zfill(4)
    return None


class BackOffice:
    """Refunds, voids, day close and receipts over the payments' journal and the operators' PINs."""

    def __init__(self, payments: Payments, operators: Operators) -> None:
        self.payments = payments
        self.operators = operators
        self._auto_lock = threading.Lock()
        self._auto_next: datetime | None = None  # no look at the journal before then
        self._auto_thread: threading.Thread | None = None
        self._closed = False

    def original_sale(self, row: TxnRow) -> OriginalSale:
        related = self.payments.require_journal().txns.related(row.id)
        refunded = sum(r.amount.minor for r in related if r.kind == "refund" and r.approved)
        voided = any(r.kind == "void" and r.approved for r in related)
        return OriginalSale(kind=row.kind, approved=row.approved, voided=voided, amount=row.amount,
                            refunded=Money(refunded, row.amount.currency), created_at=row.created_at,
                            business_date=row.business_date)

    def lookup(self, reference: str, *, sales_only: bool = True) -> Lookup:
        """The row a typed reference names: its short reference ('0042': today's first, else the one
        day that has it; '2026-11-20/0042' for another day), its full id, or the start or end of its
        id. Several rows that fit (and none of today's) make the reference ambiguous."""
        journal = self.payments.require_journal()
        text = reference.strip()
        if not text:
            return Lookup(None)
        kinds = SALE_KINDS if sales_only else ("sale", "fare", "refund", "void")
        short = parse_reference(text)
        if short is not None:
            day, ref = short
            rows = [r for r in journal.txns.by_short_ref(ref, day) if r.kind in kinds]
            if day is None:
                today = [r for r in rows if r.business_date == self.payments.business_date()]
                rows = today or rows
            return Lookup(rows[0] if len(rows) == 1 else None, tuple(rows))
        row = journal.txns.get(text)
        if row is not None:
            return Lookup(row if row.kind in kinds else None, (row,))
        matches = [r for r in journal.txns.find(text) if r.kind in kinds]
        return Lookup(matches[0] if len(matches) == 1 else None, tuple(matches))

    def find_original(self, reference: str) -> TxnRow | None:
        """A sale by its reference (see `lookup`), when the reference names exactly one."""
        return self.lookup(reference).row

    def marks(self, rows: list[TxnRow]) -> dict[str, SaleMark]:
        """For the approved sales among `rows`: voided, or refunded how much (an index look-up each)."""
        journal = self.payments.require_journal()
        out: dict[str, SaleMark] = {}
        for row in rows:
            if row.kind not in SALE_KINDS or not row.approved:
                continue
            related = journal.txns.related(row.id)
            voided = any(r.kind == "void" and r.approved for r in related)
            refunded = sum(r.amount.minor for r in related if r.kind == "refund" and r.approved)
            if voided or refunded:
                out[row.id] = SaleMark(voided, refunded)
        return out

    # -- cash ---------------------------------------------------------------------------------------

    def pay_cash(self, amount: Money, tendered: Money, *, operator: str | None,
                 details: Mapping[str, Any] | None = None) -> TxnRow:
        """A cash tender: `tendered` handed over for `amount`, the change given back; journaled (and
        signed) like every payment, method `cash`, so the drawer is counted in the day reports.
        Nothing for the rules to decide: cash is not a card, a code or a backend's answer."""
        if tendered.currency != amount.currency or tendered < amount or not amount.is_positive:
            raise WalletposError(f"cash: {tendered} does not pay {amount}", title="Cash")
        change = tendered - amount
        return self.payments.require_journal().txns.append(
            NewTransaction(kind="sale", amount=amount, method="cash", decision="approved", reasons=("cash_tendered",),
                           auth_mode="none", operator=operator,
                           details={**(details or {}), "tender": {"cash": tendered.minor, "change": change.minor}}),
            now=self.payments.clock(), business_date=self.payments.business_date())

    def _supervisor(self, supervisor_id: str | None, pin: str | None, purpose: str) -> PinCheck | None:
        if not supervisor_id or not pin:
            return None
        return self.operators.check(supervisor_id, pin, now=self.payments.clock(), purpose=purpose,
                                       require_role="supervisor")

    def refund_check(self, reference: str, amount: Money | None) -> BackOfficeResult:
        """Everything a refund checks but the supervisor's PIN (asked only when this is ok); the row
        is the sale, `refundable` what is left of it."""
        found = self.lookup(reference)
        if found.row is None:
            return BackOfficeResult(False, (found.problem or "not_found",))
        sale = self.original_sale(found.row)
        amount = amount if amount is not None else sale.amount - sale.refunded
        window = self.payments.config.refunds.window_days
        check = check_refund(sale, amount, now=self.payments.clock(), window_days=window, supervisor_verified=True)
        return BackOfficeResult(check.allowed, tuple(p.value for p in check.problems), found.row,
                                refundable=check.refundable)

    def void_check(self) -> BackOfficeResult:
        """Everything a void of the last sale checks but the supervisor's PIN; the row is that sale."""
        journal = self.payments.require_journal()
        last = journal.txns.last_sale()
        if last is None:
            return BackOfficeResult(False, ("not_found",))
        check = self._void_rules(last, supervisor_verified=True)
        return BackOfficeResult(check.allowed, tuple(p.value for p in check.problems), last)

    def _void_rules(self, last: TxnRow, *, supervisor_verified: bool) -> RefundCheck:
        journal = self.payments.require_journal()
        sale = self.original_sale(last)
        # the newest approved sale: later refunds of other sales do not matter, a later sale does
        newer = [r for r in journal.txns.recent(20) if r.seq > last.seq and r.approved and r.kind in SALE_KINDS]
        return check_void(sale, is_last_sale=not newer, business_date=self.payments.business_date(),
                          supervisor_verified=supervisor_verified)

    def refund(self, reference: str, amount: Money | None, *, operator: str | None,
               supervisor_id: str | None, supervisor_pin: str | None) -> BackOfficeResult:
        found = self.lookup(reference)
        original = found.row
        if original is None:
            return BackOfficeResult(False, (found.problem or "not_found",))
        sale = self.original_sale(original)
        amount = amount if amount is not None else sale.amount - sale.refunded
        # check everything but the PIN first, so a refund that cannot happen costs no PIN attempt
        window = self.payments.config.refunds.window_days
        pre = check_refund(sale, amount, now=self.payments.clock(), window_days=window, supervisor_verified=True)
        if not pre.allowed:
            return self._refused("refund_refused", original, pre, operator)
        supervisor = self._supervisor(supervisor_id, supervisor_pin, "refund_supervisor")
        check = check_refund(sale, amount, now=self.payments.clock(), window_days=window,
                             supervisor_verified=bool(supervisor and supervisor.ok))
        if not check.allowed:
            return self._refused("refund_refused", original, check, operator, supervisor)
        row = self.payments.require_journal().txns.append(
            NewTransaction(kind="refund", amount=amount, method=original.method, decision="approved",
                           reasons=("refund_approved_by_supervisor",), auth_mode="offline", scheme=original.scheme,
                           card_token=original.card_token, masked_pan=original.masked_pan, reference=original.id,
                           operator=operator, details={"supervisor": supervisor.operator.id if supervisor and
                                                       supervisor.operator else None,
                                                       **_tax_share(original, amount)}),
            now=self.payments.clock(), business_date=self.payments.business_date(),
        )
        return BackOfficeResult(True, (), row, supervisor, check.refundable - amount)

    def void_last(self, *, operator: str | None, supervisor_id: str | None,
                  supervisor_pin: str | None) -> BackOfficeResult:
        journal = self.payments.require_journal()
        last = journal.txns.last_sale()
        if last is None:
            return BackOfficeResult(False, ("not_found",))
        pre = self._void_rules(last, supervisor_verified=True)
        if not pre.allowed:
            return self._refused("void_refused", last, pre, operator)
        supervisor = self._supervisor(supervisor_id, supervisor_pin, "void_supervisor")
        check = self._void_rules(last, supervisor_verified=bool(supervisor and supervisor.ok))
        if not check.allowed:
            return self._refused("void_refused", last, check, operator, supervisor)
        row = journal.txns.append(
            NewTransaction(kind="void", amount=last.amount, method=last.method, decision="approved",
                           reasons=("void_approved_by_supervisor",), auth_mode="offline", scheme=last.scheme,
                           card_token=last.card_token, masked_pan=last.masked_pan, reference=last.id,
                           operator=operator, details={"supervisor": supervisor.operator.id if supervisor and
                                                       supervisor.operator else None,
                                                       **_tax_share(last, last.amount)}),
            now=self.payments.clock(), business_date=self.payments.business_date(),
        )
        return BackOfficeResult(True, (), row, supervisor)

    def _refused(self, event: str, original: TxnRow, check: RefundCheck, operator: str | None,
                 supervisor: PinCheck | None = None) -> BackOfficeResult:
        problems = tuple(
            f"supervisor_{supervisor.reason}"
            if p is RefundProblem.SUPERVISOR_PIN_REQUIRED and supervisor is not None and not supervisor.ok else p.value
            for p in check.problems
        )
        self.payments.audit(event, actor=operator, details={"original": original.id, "problems": list(problems)})
        return BackOfficeResult(False, problems, None, supervisor, check.refundable)

    # -- day close ---------------------------------------------------------------------------------

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

    # -- housekeeping: the automatic day close ---------------------------------------------------------

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

    def unsynced(self) -> tuple[int, int]:
        """(rows, amount in minor units) not yet accepted by the backend: what a day close says."""
        journal = self.payments.require_journal()
        summary = journal.sync.queue_summary()
        pending = int(summary["pending"])
        return pending, self.day_report().pending_sync.amount if pending else 0

    @staticmethod
    def _write(path: Path, text: str) -> Path:
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def save_receipt(self, row: TxnRow, locale: str | None = None) -> Path:
        folder = self.payments.data_dir / "receipts"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            text = "\n".join(receipt_lines(row, self.payments.config, locale, self.sale_parts(row))) + "\n"
            return self._write(folder / f"{row.id}.txt", text)
        except OSError as exc:
            raise StorageError(f"cannot write the receipt to {folder}: {exc.strerror}") from None


    def sale_parts(self, row: TxnRow) -> list[TxnRow]:
        """The payments of a sale paid in parts (split tender), this one among them, by the sale id in
        the rows' details, in order ([] for a sale paid at once). The parts of a sale are paid one after
        the other at one counter: they are looked for among the SALE_PARTS_WINDOW rows around it."""
        sale_id = sale_id_of(row)
        if not sale_id:
            return []
        window = self.payments.require_journal().txns.rows_after(max(0, row.seq - SALE_PARTS_WINDOW),
                                                                 until=row.seq + SALE_PARTS_WINDOW)
        return [r for r in window if sale_id_of(r) == sale_id]


def sale_id_of(row: TxnRow) -> str | None:
    """The sale a payment is a part of (split tender), from its details."""
    sale = row.details.get("sale") if isinstance(row.details, Mapping) else None
    value = sale.get("id") if isinstance(sale, Mapping) else None
    return value if isinstance(value, str) else None


def _tax_share(original: TxnRow, amount: Money) -> dict[str, Any]:
    """The tax a refund or void of `amount` of `original` takes back: all of it for the whole amount,
    else each rate's share, rounded half up (details of the refund or void row)."""
    taxes = taxes_of(original.details)
    if not taxes or not original.amount.minor:
        return {}
    whole, part = original.amount.minor, amount.minor

    def share(value: int) -> int:
        return value if part == whole else (value * part * 2 + whole) // (whole * 2)

    return {"tax": [{"rate": t.rate, "gross": share(t.gross), "tax": share(t.tax)} for t in taxes]}
