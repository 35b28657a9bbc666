"""The doctor's results: one `Check` per thing looked at, a `DoctorReport` for them all, and the
exit codes a monitoring script reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from terminal.i18n import t

Status = Literal["pass", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "skip")

# exit codes of `walletpos doctor` (README "For technicians"); 2 usage, 3 config as every command
EXIT_HEALTHY = 0  # every check passed (or was skipped: nothing to check)
EXIT_WARNINGS = 20  # the terminal works; something needs a look soon
EXIT_FAILURES = 21  # at least one check failed: the terminal cannot do part of its work

AREAS = ("system", "reader", "camera", "backend", "clock", "journal", "queue", "limits")


@dataclass(frozen=True)
class Check:
    """One thing the doctor looked at: `status`, the `figure` it measured (short text), a `detail`
    sentence, for a warning or a failure the one `next_step` to take, the figures as numbers in
    `measured`, and how long the check took."""

    area: str
    name: str
    status: Status
    figure: str
    detail: str = ""
    next_step: str = ""
    measured: Mapping[str, Any] = field(default_factory=dict)
    ms: float = 0.0
    step_key: str = ""  # the next step's message key (a screen shows it in its language)
    step_values: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"area": self.area, "name": self.name, "status": self.status, "figure": self.figure,
                "detail": self.detail, "next_step": self.next_step or None, "step_key": self.step_key or None,
                "measured": dict(self.measured), "ms": round(self.ms, 1)}

    def step_in(self, locale: str) -> str:
        """The next step in `locale` (the English text when the check has no message key)."""
        return t(locale, self.step_key, **self.step_values) if self.step_key else self.next_step


def advice(key: str, **values: Any) -> dict[str, Any]:
    """A check's next step by its message key (`doctor.step.<key>` in the locale catalogues): the
    English text, and the key and values a screen shows in its own language. Use as
    `Check(..., **advice("start_pcscd"))`."""
    full = f"doctor.step.{key}"
    return {"next_step": t("en", full, **values), "step_key": full, "step_values": dict(values)}


def timed(make: Callable[[], Check]) -> Check:
    """`make()`, with the time it took in the check's `ms`."""
    t0 = time.perf_counter()
    check = make()
    return replace(check, ms=(time.perf_counter() - t0) * 1000)


@dataclass(frozen=True)
class DoctorReport:
    """Every check of one doctor run, in area order."""

    checks: tuple[Check, ...]
    started_at: str
    total_ms: float
    terminal_id: str = ""

    @property
    def status(self) -> Status:
        found = {c.status for c in self.checks}
        return "fail" if "fail" in found else "warn" if "warn" in found else "pass"

    @property
    def exit_code(self) -> int:
        return {"fail": EXIT_FAILURES, "warn": EXIT_WARNINGS}.get(self.status, EXIT_HEALTHY)

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in STATUSES}

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def find(self, area: str, name: str) -> Check | None:
        return next((c for c in self.checks if c.area == area and c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"terminal_id": self.terminal_id, "started_at": self.started_at, "status": self.status,
                "exit_code": self.exit_code, "total_ms": round(self.total_ms, 1), "counts": self.counts(),
                "checks": [c.to_dict() for c in self.checks]}


def order(checks: Sequence[Check]) -> tuple[Check, ...]:
    """Checks in area order (AREAS), each area's in the order it made them."""
    rank = {area: i for i, area in enumerate(AREAS)}
    return tuple(sorted(checks, key=lambda c: rank.get(c.area, len(AREAS))))


__all__ = ["AREAS", "EXIT_FAILURES", "EXIT_HEALTHY", "EXIT_WARNINGS", "STATUSES", "Check", "DoctorReport", "Status",
           "advice", "order", "timed"]
