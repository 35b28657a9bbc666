"""What a sync cycle did (`SyncReport`) and the sync state at a glance (`SyncStatus`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from terminal.journal import Journal, parse_utc
from terminal.payment import Clock

META_LAST_ATTEMPT = "sync_last_attempt_at"
META_LAST_ERROR = "sync_last_error"
META_LAST_ERROR_AT = "sync_last_error_at"
META_LAST_REPORT = "sync_last_report"


@dataclass
class SyncReport:
    """What one sync cycle did."""

    started_at: str
    forced: bool = False
    ok: bool = False
    skipped: str | None = None  # why nothing was attempted (circuit open)
    finished_at: str | None = None
    duration_ms: float = 0.0
    queue_before: int = 0
    queue_after: int = 0
    uploaded: int = 0
    accepted: int = 0
    duplicate: int = 0
    declined_after_offline: int = 0
    rejected: int = 0
    batches: int = 0
    requests: int = 0
    requeued: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    deny_list: dict[str, int] = field(default_factory=dict)
    limits_version: int | None = None
    limits_applied: list[str] = field(default_factory=list)
    issuer_keys_version: int | None = None
    sealing_key_id: str | None = None
    clock_skew_ms: int | None = None
    heartbeat_ok: bool = False
    heartbeat_reused: bool = False  # a retry soon after an answered heartbeat went straight to the rows
    backend_answered: bool = False  # the failure was an answer from the backend (not silence)
    merchant_code_payments: int = 0  # sales journaled for merchant codes paid after they left the screen
    seq_conflicts: int = 0  # rows the backend holds otherwise under the same sequence number (journal on hold)
    error: str | None = None
    retryable: bool = True
    retry_after_s: float | None = None
    declined: list[dict[str, Any]] = field(default_factory=list)  # rows declined after offline approval (first 100)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["gaps"] = [list(g) for g in self.gaps]
        out["duration_ms"] = round(self.duration_ms, 1)
        return out

    def lines(self) -> list[str]:
        """What happened, for people."""
        if self.skipped:
            return [f"sync skipped: {self.skipped}"]
        head = "sync OK" if self.ok else "sync FAILED"
        out = [f"{head} in {self.duration_ms / 1000:.2f} s ({self.requests} requests)"]
        if self.uploaded or self.queue_before:
            out.append(f"uploaded {self.uploaded} of {self.queue_before} queued rows in {self.batches} batches: "
                       f"{self.accepted} accepted, {self.duplicate} already there, "
                       f"{self.declined_after_offline} declined after offline approval, {self.rejected} rejected")
        else:
            out.append("nothing to upload")
        for row in self.declined:
            out.append(f"  declined after offline approval: seq {row['seq']} {row['amount_text']} "
                       f"{row['masked_pan'] or row['card_token'] or ''} ({row['reason']}); card now denied here")
        if self.deny_list:
            out.append(f"deny list now version {self.deny_list['version']} (+{self.deny_list['added']} "
                       f"-{self.deny_list['removed']})")
        if self.limits_version is not None:
            applied = ", ".join(self.limits_applied) or "none stricter than local config"
            out.append(f"backend limits version {self.limits_version} (tightened: {applied})")
        if self.issuer_keys_version is not None:
            out.append(f"issuer keys now version {self.issuer_keys_version}")
        if self.sealing_key_id:
            out.append(f"sealing key now {self.sealing_key_id}")
        if self.gaps:
            out.append(f"backend reports missing sequence numbers {self.gaps}; {self.requeued} rows queued again")
        if self.seq_conflicts:
            out.append(f"the backend holds other transactions under {self.seq_conflicts} of these sequence numbers: "
                       "the journal is on hold and offline approvals are off until a technician resolves it "
                       "(walletpos journal resolve-rejected, walletpos journal resolve)")
        if self.error:
            retry = f" (backend asks to wait {self.retry_after_s:.0f} s)" if self.retry_after_s else ""
            out.append(f"error: {self.error}{retry}")
        out.append(f"{self.queue_after} rows still waiting")
        return out


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """Sync state at a glance (for `walletpos sync --status` and the TUI)."""

    enabled: bool
    backend_url: str
    enrolled: bool
    enrolment_problem: str | None
    queue_depth: int
    oldest_pending_at: str | None
    oldest_pending_age_s: float | None
    last_success_at: str | None
    last_attempt_at: str | None
    last_error: str | None
    last_error_at: str | None
    breaker_state: str
    consecutive_failures: int
    worker_running: bool
    next_attempt_in_s: float | None
    declined_after_offline: int
    rejected: int
    deny_list_version: int
    limits_version: int
    issuer_keys_version: int
    hold: str | None = None  # why offline approvals are off (journal integrity, a seq conflict), or None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def disabled_status(journal: Journal, backend_url: str, clock: Clock) -> SyncStatus:
    """Status of a terminal whose backend is switched off in config."""
    head = journal.head()
    queue = journal.sync.queue_summary()
    oldest = queue["oldest_pending_at"]
    counts = head.sync_state_counts()
    return SyncStatus(
        enabled=False, backend_url=backend_url, enrolled=False,
        enrolment_problem="the backend is switched off ([backend] enabled = false)", queue_depth=queue["pending"],
        oldest_pending_at=oldest,
        oldest_pending_age_s=round((clock() - parse_utc(oldest)).total_seconds(), 1) if oldest else None,
        last_success_at=head.last_sync_ok_at, last_attempt_at=journal.meta(META_LAST_ATTEMPT),
        last_error=journal.meta(META_LAST_ERROR) or None, last_error_at=journal.meta(META_LAST_ERROR_AT) or None,
        breaker_state="closed", consecutive_failures=0, worker_running=False, next_attempt_in_s=None,
        declined_after_offline=counts["declined_after_offline"], rejected=counts["rejected"],
        deny_list_version=head.deny_version, limits_version=0,
        issuer_keys_version=journal.issuer_keys.version(), hold=head.hold,
    )
