"""Fault injection for the sandbox backend, so tests exercise a misbehaving network without mocks.

A plan says how often (`rate`, 0..1) a terminal API request (`/v1/...`, optionally only `paths`
starting with given prefixes) goes wrong, and how:

- `error`: a 500 answer, either before the request is processed or *after* it was committed
  (the terminal cannot tell, so it must retry and the backend must answer `duplicate`);
- `reset`: the TCP connection is reset (RST), before or after processing;
- `timeout`: the request is processed, then the answer is held for `timeout_ms` (longer than the
  terminal waits);
- `malformed`: the request is processed, then the answer is garbage: cut-off JSON, an HTML page,
  JSON of the wrong shape, or per-row results that do not match the rows sent;
- `retry_after`: a 503 or 429 with `Retry-After: retry_after_s`, before processing.

`latency_ms` delays every matching request. `count` stops injecting after that many faults.
`seed` makes the sequence of draws repeatable. `cycle` takes the kinds in turn instead of at random,
so that every kind shows up once `len(kinds)` faults were injected.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("error", "reset", "timeout", "malformed", "retry_after")
MALFORMED = ("truncated", "html", "wrong_shape", "wrong_results")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    phase: str  # before | after (processing)
    variant: str | None = None


@dataclass(frozen=True)
class FaultPlan:
    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    latency_ms: int = 0
    timeout_ms: int = 2000
    retry_after_s: int = 1
    paths: tuple[str, ...] = ()
    count: int | None = None
    seed: int | None = None
    cycle: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        allowed = {"rate", "kinds", "latency_ms", "timeout_ms", "retry_after_s", "paths", "count", "seed", "cycle"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}; "
                             f"allowed: {', '.join(sorted(allowed))}")
        rate = data.get("rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError("rate must be a number from 0 to 1")
        kinds = tuple(data.get("kinds", KINDS))
        bad = [k for k in kinds if k not in KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds must be a non-empty list of: {', '.join(KINDS)}")
        ints = {}
        for name, default in (("latency_ms", 0), ("timeout_ms", 2000), ("retry_after_s", 1)):
            value = data.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0")
            ints[name] = value
        count = data.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ValueError("count must be a whole number >= 0 or null")
        paths = data.get("paths", ())
        if not isinstance(paths, (list, tuple)) or not all(isinstance(p, str) for p in paths):
            raise ValueError("paths must be a list of path prefixes")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be a whole number or null")
        cycle = data.get("cycle", False)
        if not isinstance(cycle, bool):
            raise ValueError("cycle must be true or false")
        return cls(rate=float(rate), kinds=kinds, paths=tuple(paths), count=count, seed=seed, cycle=cycle, **ints)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kinds"], out["paths"] = list(self.kinds), list(self.paths)
        return out


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plan = FaultPlan()
        self._rng = random.Random()
        self._left: int | None = None
        self._turn = 0
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()

    def configure(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan
            self._rng = random.Random(plan.seed)
            self._left = plan.count
            self._turn = 0

    def reset_counters(self) -> None:
        with self._lock:
            self.injected.clear()
            self.requests.clear()

    def applies(self, path: str) -> bool:
        plan = self.plan
        return not plan.paths or any(path.startswith(p) for p in plan.paths)

    def draw(self, path: str) -> Fault | None:
        """Count a terminal API request and decide whether it goes wrong."""
        with self._lock:
            self.requests[path] += 1
            plan = self.plan
            if plan.rate <= 0 or not self.applies(path) or self._left == 0:
                return None
            if self._rng.random() >= plan.rate:
                return None
            if self._left is not None:
                self._left -= 1
            if plan.cycle:
                kind = plan.kinds[self._turn % len(plan.kinds)]
                self._turn += 1
            else:
                kind = self._rng.choice(plan.kinds)
            if kind in ("error", "reset"):
                phase = self._rng.choice(("before", "after"))
            elif kind == "retry_after":
                phase = "before"
            else:
                phase = "after"
            variant = self._rng.choice(MALFORMED) if kind == "malformed" else None
            if kind == "retry_after":
                variant = self._rng.choice(("503", "429"))
            self.injected[kind] += 1
            self.injected[f"{kind}:{phase}"] += 1
            return Fault(kind, phase, variant)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"plan": self.plan.to_dict(), "injected": dict(self.injected), "requests": dict(self.requests),
                    "left": self._left}
