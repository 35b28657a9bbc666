"""Store-and-forward sync with the wallet backend.

One cycle (`SyncWorker.run_once`):
1. heartbeat: queue depth, oldest pending row, clock and the versions the terminal holds; the
   answer says which data sets changed;
2. downloads, each only when its version changed: deny-list deltas (paged; a backend that lost
   its history answers `reset` and the backend-sourced entries are replaced), terminal limits
   (stored in journal meta and applied: they can only tighten the local config, see
   `terminal.core.backend_limits`), issuer keys for signed wallet codes, and the sealing key;
3. upload of every row pending at the start of the cycle, in sequence order, in batches of
   `[sync] batch_size`. Each row's idempotency key is its transaction id, so a batch whose answer
   was lost is simply sent again. The answer is recorded per row (accepted, duplicate,
   declined_after_offline, rejected); a row declined after an offline approval is kept and marked,
   and its card token goes on the local deny list *before* the row leaves the queue, so a crash in
   between can only cause the decline to be fetched again. Rows the backend reports missing
   (gaps) that the terminal took for delivered are queued again;
4. on success, `last_sync_ok_at` in the journal head (the offline rules' sync age; not when the
   backend rejected rows of the cycle: a row refused is not synced), and in every case
   the last attempt and error, so `walletpos sync --status` in another process sees them;
   `Service.housekeeping()` seals the journal head.

A failed cycle leaves every unanswered row pending (its attempt counted); the background worker
tries again after an exponential backoff with jitter (`[sync] backoff_*`), at least as long as a
Retry-After from the backend (up to `[sync] retry_after_max_ms`) and, while the circuit is open,
until the breaker allows a probe.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from terminal.backend import (
    BackendAnswerError,
    BackendAuthorizer,
    BackendClient,
    BackendError,
    BackendRefused,
    BatchAnswer,
    HeartbeatAnswer,
)
from terminal.config import SyncConfig
from terminal.core.backend_limits import BackendLimits, tighten
from terminal.errors import StorageError
from terminal.journal import Journal, TxnRow, parse_utc, utc_text
from terminal.payment import Clock
from terminal.payments import RuleBook
from terminal.sync.answers import keep_head_ack, tally_answer
from terminal.sync.report import (
    META_LAST_ATTEMPT,
    META_LAST_ERROR,
    META_LAST_ERROR_AT,
    META_LAST_REPORT,
    SyncReport,
    SyncStatus,
)

log = logging.getLogger("walletpos.sync")

GUARD_LIMITS = "backend_limits"  # authenticated: decisions read the limits
MAX_DENY_PAGES = 10_000
SKEW_WARNING_MS = 60_000
HEARTBEAT_REUSE_S = 10.0  # a retry within this long after an answered heartbeat skips the next one


class SyncWorker:
    """Moves the journal to the backend and the backend's data to the terminal."""

    def __init__(self, journal: Journal, client: BackendClient, *, sync_config: SyncConfig, clock: Clock,
                 rules: RuleBook, housekeeping: Callable[[], None],
                 settle_merchant_codes: Callable[[], int] | None = None,
                 authorizer: BackendAuthorizer | None = None, rng: random.Random | None = None):
        self.client = client
        self.authorizer = authorizer
        self.cfg = sync_config
        self.clock = clock
        self.journal = journal
        self.rules = rules
        self.housekeeping = housekeeping
        self.settle_merchant_codes = settle_merchant_codes
        self._rng = rng or random.Random()
        self._cycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lifecycle = threading.Lock()  # start() and stop() one at a time
        self._failures = 0
        self._beat_ok_at: float | None = None  # monotonic time of the last heartbeat the backend answered
        self._last_cycle_failed = False
        self._next_at: float | None = None
        self._support_requested: Callable[[], None] | None = None
        self.apply_stored_limits()

    def on_support_request(self, callback: Callable[[], None]) -> None:
        """Call `callback` (in the sync thread, so it must return at once) whenever a heartbeat answer
        says support asks this terminal for a support bundle (the service uploads one)."""
        self._support_requested = callback

    # -- one cycle --------------------------------------------------------------------------------

    def run_once(self, *, force: bool = False) -> SyncReport:
        """One sync cycle. `force`: go ahead even while the circuit is open (an operator's request)."""
        with self._cycle:
            t0 = time.perf_counter()
            report = SyncReport(started_at=utc_text(self.clock()), forced=force)
            if self.client.enrolled and not force and not self.client.breaker.allows_probe():
                report.skipped = (f"the backend failed {self.client.breaker.consecutive_failures} times in a row; "
                                  f"next try in {self.client.breaker.seconds_until_probe():.1f} s")
                report.queue_before = report.queue_after = self.journal.sync.queue_summary()["pending"]
                return report
            requests_before = self.client.requests_made
            try:
                self._exchange(report)
                report.ok = True
                self._settle_merchant_codes(report)
            except BackendError as exc:
                report.error, report.retryable, report.retry_after_s = exc.message, exc.retryable, exc.retry_after_s
                report.backend_answered = exc.answered
                log.warning("sync failed: %s", exc.message)
            except StorageError as exc:
                report.error, report.retryable = f"journal: {exc.message}", True
                log.error("sync stopped by the journal: %s", exc.message)
            finally:
                self._last_cycle_failed = not report.ok
                report.requests = self.client.requests_made - requests_before
                report.duration_ms = (time.perf_counter() - t0) * 1000
                report.finished_at = utc_text(self.clock())
                self._finish(report)
            return report

    def _finish(self, report: SyncReport) -> None:
        try:
            report.queue_after = self.journal.sync.queue_summary()["pending"]
            values = {META_LAST_ATTEMPT: report.finished_at or report.started_at,
                      META_LAST_REPORT: json.dumps(report.to_dict(), separators=(",", ":"))}
            if report.ok:
                values.update({META_LAST_ERROR: "", META_LAST_ERROR_AT: ""})
                if not report.rejected:  # rows the backend refused are not synced: the sync age keeps running
                    self.journal.sync.record_success(self.clock())  # authenticated: the rules' sync age reads it
            else:
                values.update({META_LAST_ERROR: report.error or "", META_LAST_ERROR_AT: report.finished_at or ""})
            self.journal.set_meta(values)
        except StorageError as exc:
            log.error("cannot record the sync outcome: %s", exc.message)
        self.housekeeping()

    def _exchange(self, report: SyncReport) -> None:
        journal = self.journal
        queue = journal.sync.queue_summary()
        report.queue_before = queue["pending"]
        if (self._last_cycle_failed and queue["pending"] and self._beat_ok_at is not None
                and time.monotonic() - self._beat_ok_at < HEARTBEAT_REUSE_S):
            # a retry soon after an answered heartbeat: what it brought (deny list, limits, keys) is
            # current; send the queued rows first and exchange news at the next cycle
            report.heartbeat_reused = True
            self._push(report)
            return
        limits = self.stored_limits()
        beat = self.client.heartbeat(
            queue_depth=queue["pending"], oldest_pending_at=queue["oldest_pending_at"],
            last_sync_ok_at=journal.head().last_sync_ok_at, deny_list_version=journal.head().deny_version,
            config_version=limits.version if limits else 0,
            issuer_keys_version=journal.issuer_keys.version(),
        )
        self._beat_ok_at = time.monotonic()
        report.heartbeat_ok = True
        report.clock_skew_ms = beat.clock_skew_ms
        if beat.clock_skew_ms is not None and abs(beat.clock_skew_ms) > SKEW_WARNING_MS:
            log.warning("terminal clock is %+.1f s off the backend's; check the time source",
                        beat.clock_skew_ms / 1000)
        if beat.support_bundle_requested and self._support_requested is not None:
            self._support_requested()
        self._pull_deny_list(beat, report)
        self._pull_limits(beat, limits, report)
        self._pull_issuer_keys(beat, report)
        self._pull_sealing_key(beat, report)
        self._push(report)

    def _settle_merchant_codes(self, report: SyncReport) -> None:
        """After a good exchange: merchant codes that left the screen unpaid are closed at the backend,
        and a payment made with one is journaled (`codepay.settle_merchant_codes`). A failure here
        does not fail the cycle: the codes stay open for the next one."""
        if self.settle_merchant_codes is None:
            return
        try:
            report.merchant_code_payments = self.settle_merchant_codes()
        except BackendError as exc:
            log.warning("merchant codes not settled yet: %s", exc.message)

    # -- downloads --------------------------------------------------------------------------------

    def _pull_deny_list(self, beat: HeartbeatAnswer, report: SyncReport) -> None:
        journal = self.journal
        local = journal.head().deny_version
        if beat.deny_list_version == local:
            return
        added = removed = 0
        for _ in range(MAX_DENY_PAGES):
            delta = self.client.deny_delta(local)
            gone = list(delta.removed)
            if delta.reset:
                log.warning("backend does not know deny-list version %d: replacing the backend entries", local)
                gone += [token for token, _, _ in journal.deny.entries("backend")]
            elif delta.has_more and delta.version <= local:
                raise BackendAnswerError(f"deny-list pages do not advance (version {delta.version} after {local})")
            journal.apply_deny_delta(delta.version, delta.added, gone, now=self.clock())
            added, removed, local = added + len(delta.added), removed + len(gone), delta.version
            if not delta.has_more:
                break
        report.deny_list = {"version": local, "added": added, "removed": removed}

    def stored_limits(self) -> BackendLimits | None:
        data = self.journal.guard(GUARD_LIMITS)
        if not data:
            return None
        try:
            return BackendLimits(int(data["version"]), str(data["currency"]), dict(data["values"]))
        except (ValueError, KeyError, TypeError):
            log.error("stored backend limits are unreadable; they will be fetched again")
            return None

    def apply_stored_limits(self) -> None:
        limits = self.stored_limits()
        if limits is not None:
            self.apply_limits(limits)

    def apply_limits(self, limits: BackendLimits) -> list[str]:
        result = tighten(self.rules.local, limits)
        if result.problem:
            log.error("%s", result.problem)
        self.rules.use(result.rules)
        return list(result.applied)

    def _pull_limits(self, beat: HeartbeatAnswer, stored: BackendLimits | None, report: SyncReport) -> None:
        if beat.config_version == (stored.version if stored else 0):
            return
        answer = self.client.terminal_limits()
        limits = BackendLimits(answer.version, answer.currency, dict(answer.limits))
        self.journal.set_guard(GUARD_LIMITS, {"version": limits.version, "currency": limits.currency,
                                              "values": dict(limits.values)}, now=self.clock())
        report.limits_version = limits.version
        report.limits_applied = self.apply_limits(limits)

    def _pull_issuer_keys(self, beat: HeartbeatAnswer, report: SyncReport) -> None:
        if beat.issuer_keys_version == self.journal.issuer_keys.version():
            return
        version, keys = self.client.issuer_keys()
        self.journal.issuer_keys.replace(keys, version, now=self.clock())
        report.issuer_keys_version = version

    def _pull_sealing_key(self, beat: HeartbeatAnswer, report: SyncReport) -> None:
        enrolment = self.client.enrolment
        if enrolment is None or enrolment.sealing_key_id == beat.sealing_key_id:
            return
        key_id, key = self.client.sealing_key()
        self.client.update_sealing_key(key_id, key)
        report.sealing_key_id = key_id

    # -- upload -----------------------------------------------------------------------------------

    def _push(self, report: SyncReport) -> None:
        """Upload every row pending now, batch after batch. While one batch is on the wire the next
        one is read from the journal in a helper thread (the rows after it are not touched by the
        answer), so the terminal's work overlaps the backend's."""
        journal = self.journal
        journal.txns.sign_pending()  # rows are signed shortly after they are written; at the latest now
        head = journal.head().txn_seq

        def batch_after(cursor: int) -> list[TxnRow]:
            return [r for r in journal.sync.pending(self.cfg.batch_size, after_seq=cursor) if r.seq <= head]

        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="walletpos-sync-read") as reader:
            rows = batch_after(0)
            while rows:
                upcoming = reader.submit(batch_after, rows[-1].seq)
                self._upload(rows, report)
                rows = upcoming.result()

    def _upload(self, rows: list[TxnRow], report: SyncReport) -> None:
        """Upload one batch. A batch the backend refuses as invalid (422) is split in halves until the
        row it refuses is alone; that row is marked `rejected` (kept in the journal, reported, for
        support to look at) so one bad row can never hold up the rows behind it."""
        try:
            answer = self.client.upload(rows)
        except BackendRefused as exc:
            if exc.status != 422:
                self.journal.sync.note_sync_attempt([r.id for r in rows], exc.message[:300])
                raise
            if len(rows) == 1:
                row = rows[0]
                report.rejected += 1
                log.error("backend refused journal row seq=%d id=%s as invalid: %s (kept in the journal; call "
                          "support)", row.seq, row.id, exc.message)
                self.journal.sync.set_sync_results([(row.id, "rejected", f"invalid: {exc.message}"[:300])],
                                              now=self.clock())
                return
            half = len(rows) // 2
            self._upload(rows[:half], report)
            self._upload(rows[half:], report)
            return
        except BackendError as exc:
            self.journal.sync.note_sync_attempt([r.id for r in rows], exc.message[:300])
            raise
        report.batches += 1
        report.uploaded += len(rows)
        self._record(rows, answer, report)

    def _record(self, rows: list[TxnRow], answer: BatchAnswer, report: SyncReport) -> None:
        tally = tally_answer(rows, answer, report)
        now = self.clock()
        for token, why in tally.denials:  # first the deny list, then the rows leave the queue
            self.journal.deny_locally(token, why, now=now)
        self.journal.sync.set_sync_results(tally.results, now=now)
        if answer.head_ack is not None:
            keep_head_ack(self.journal, self.client.enrolment, answer.head_ack, now)
        if tally.conflicts:
            # the backend holds other rows under these sequence numbers: this journal was lost and started
            # again, or copied to another terminal; its offline approvals are money nobody can account for
            report.seq_conflicts = len(tally.conflicts)
            self.journal.hold(f"the backend holds other transactions with sequence numbers {tally.conflicts[0]} "
                              f"to {tally.conflicts[-1]}: this terminal's journal was lost, restored from an old "
                              "copy or forked", now=now)
        if answer.gaps:
            requeued = self.journal.sync.requeue_for_sync(answer.gaps, now=now)
            report.gaps = sorted(set(report.gaps) | set(answer.gaps))
            report.requeued += requeued
            if requeued:
                log.warning("backend is missing rows %s; %d rows queued again", list(answer.gaps), requeued)

    # -- retries and the background worker --------------------------------------------------------

    def retry_delay(self, failures: int, retry_after_s: float | None = None) -> float:
        """Exponential backoff with jitter (half fixed, half random), at least Retry-After (capped)."""
        base = self.cfg.backoff_initial_ms / 1000
        ceiling = min(self.cfg.backoff_max_ms / 1000, base * 2 ** min(max(failures, 1) - 1, 40))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.cfg.retry_after_max_ms / 1000))
        return delay

    def _delay_after(self, report: SyncReport) -> float:
        if report.skipped:
            self._failures = max(self._failures, 1)
            return max(0.01, self.client.breaker.seconds_until_probe())
        if report.ok:
            self._failures = 0
            return 0.0 if report.queue_after else self.cfg.interval_ms / 1000
        # a cycle in which the backend answered (rows moved, the heartbeat, or the failure itself was
        # the backend's own error answer) shows a working backend with a passing fault: back off from
        # the start again. Only silence (no connection, timeouts, resets) makes the backoff grow; a
        # backend that answers errors to everything is held off by the circuit breaker.
        answered = report.batches or report.heartbeat_ok or report.backend_answered
        self._failures = 1 if answered else self._failures + 1
        return max(self.retry_delay(self._failures, report.retry_after_s), self.client.breaker.seconds_until_probe())

    def drain(self, *, timeout_s: float, sleep: Any = time.sleep) -> list[SyncReport]:
        """Run cycles, with the worker's backoff between failures, until a cycle succeeds with an
        empty queue, a failure cannot be retried, or `timeout_s` is up. Returns every cycle's report."""
        deadline = time.monotonic() + timeout_s
        reports: list[SyncReport] = []
        self._failures = 0
        while True:
            report = self.run_once()
            reports.append(report)
            if report.ok and report.queue_after == 0:
                return reports
            if not report.retryable and report.error:
                return reports
            delay = self._delay_after(report)
            if time.monotonic() + delay > deadline:
                return reports
            sleep(delay)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, old_loop_timeout: float = 30.0) -> None:
        """Sync in a background thread until `stop()`. Never two loops: a loop still finishing a cycle
        after a `stop()` that timed out is waited for first (a StorageError when it does not end)."""
        with self._lifecycle:
            old = self._thread
            if old is not None and old.is_alive():
                if not self._stop.is_set():
                    return  # already running
                old.join(old_loop_timeout)
                if old.is_alive():
                    raise StorageError("the previous sync loop is still finishing a cycle; try again later")
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="walletpos-sync", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        self._failures = 0
        while not self._stop.is_set():
            try:
                report = self.run_once()
                delay = self._delay_after(report)
            except Exception:  # the worker must outlive a bug in one cycle; the log has the traceback
                log.exception("sync cycle crashed")
                self._failures += 1
                delay = self.retry_delay(self._failures)
            self._next_at = time.monotonic() + delay
            if self._wake.wait(delay):  # cleared only when it woke us: a nudge that comes later is kept
                self._wake.clear()
        self._next_at = None

    def nudge(self) -> None:
        """Start the next cycle now (e.g. the operator pressed 'sync')."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the background loop; True when it ended within `timeout`. A loop still in a cycle keeps
        its thread here, so a later `start()` waits for it instead of running a second loop."""
        with self._lifecycle:
            self._stop.set()
            self._wake.set()
            thread = self._thread
            if thread is None:
                return True
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the sync loop did not stop within %.0f s (a cycle is still running)", timeout)
                return False
            self._thread = None
            return True

    def close(self) -> None:
        """Stop the worker and release the backend connections and the authorisation threads."""
        self.stop()
        if self.authorizer is not None:
            self.authorizer.close()
        self.client.close()

    # -- state ------------------------------------------------------------------------------------

    def status(self) -> SyncStatus:
        journal = self.journal
        head = journal.head()
        queue = journal.sync.queue_summary()
        oldest = queue["oldest_pending_at"]
        age = (self.clock() - parse_utc(oldest)).total_seconds() if oldest else None
        counts = head.sync_state_counts()
        limits = self.stored_limits()
        breaker = self.client.breaker
        next_in = max(0.0, self._next_at - time.monotonic()) if self.running and self._next_at else None
        return SyncStatus(
            enabled=True, backend_url=self.client.base_url, enrolled=self.client.enrolled,
            enrolment_problem=self.client.enrolment_problem, queue_depth=queue["pending"],
            oldest_pending_at=oldest, oldest_pending_age_s=round(age, 1) if age is not None else None,
            last_success_at=head.last_sync_ok_at, last_attempt_at=journal.meta(META_LAST_ATTEMPT),
            last_error=journal.meta(META_LAST_ERROR) or None, last_error_at=journal.meta(META_LAST_ERROR_AT) or None,
            breaker_state=breaker.state, consecutive_failures=breaker.consecutive_failures,
            worker_running=self.running, next_attempt_in_s=round(next_in, 3) if next_in is not None else None,
            declined_after_offline=counts["declined_after_offline"], rejected=counts["rejected"],
            deny_list_version=head.deny_version, limits_version=limits.version if limits else 0,
            issuer_keys_version=journal.issuer_keys.version(), hold=head.hold,
        )


__all__ = ["SyncWorker"]
