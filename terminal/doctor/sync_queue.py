"""The queue of journal rows waiting for the backend: how deep, how old, and the last error, judged
against the sync age after which the offline rules stop approving."""

from __future__ import annotations

from terminal.doctor.checks import Check, advice, timed
from terminal.doctor.context import DoctorContext
from terminal.errors import WalletposError

AREA = "queue"


def _queue(ctx: DoctorContext) -> Check:
    if ctx.storage_problem is not None:
        return Check(AREA, "queue", "skip", "journal not open", "see the journal checks")
    try:
        status = ctx.sync_status()
        last_sync = ctx.last_sync_at()
    except WalletposError as exc:
        return Check(AREA, "queue", "fail", "unreadable", exc.message, **advice("fix_journal_first"))
    now = ctx.clock()
    age = status.oldest_pending_age_s
    since_sync = max(0.0, (now - last_sync).total_seconds())
    limit = ctx.rules_current.max_sync_age.total_seconds()
    measured = {"depth": status.queue_depth, "oldest_pending_age_s": age,
                "oldest_pending_at": status.oldest_pending_at,
                "last_success_at": status.last_success_at, "seconds_since_sync": round(since_sync, 1),
                "max_sync_age_s": limit, "last_error": status.last_error, "last_error_at": status.last_error_at,
                "breaker": status.breaker_state, "rejected": status.rejected,
                "declined_after_offline": status.declined_after_offline}
    oldest = f", oldest {_age(age)}" if age is not None else ""
    figure = f"{status.queue_depth} waiting{oldest}"
    if not status.enabled:
        return Check(AREA, "queue", "pass", figure, "offline-only terminal: rows stay in the journal",
                     measured=measured)
    error = f"last error {status.last_error_at}: {status.last_error}" if status.last_error else ""
    if status.queue_depth and since_sync >= limit:
        return Check(AREA, "queue", "fail", figure,
                     f"no successful sync for {_age(since_sync)}: offline approvals have stopped (limit {_age(limit)})"
                     + (f"; {error}" if error else ""), measured=measured, **advice("sync_stopped"))
    if status.rejected:
        return Check(AREA, "queue", "warn", figure, f"{status.rejected} row(s) rejected by the backend",
                     measured=measured, **advice("rejected_rows"))
    if status.queue_depth and (since_sync >= limit / 2 or status.last_error):
        return Check(AREA, "queue", "warn", figure,
                     error or f"no successful sync for {_age(since_sync)} (offline approvals stop at {_age(limit)})",
                     measured=measured, **advice("sync_once"))
    return Check(AREA, "queue", "pass", figure,
                 f"last successful sync {status.last_success_at or 'never'}", measured=measured)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_queue(ctx: DoctorContext) -> list[Check]:
    return [timed(lambda: _queue(ctx))]


__all__ = ["check_queue"]
