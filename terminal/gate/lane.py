"""One gate lane: its card reader and its camera watched and armed at all times, every presentation
decided (`terminal.transit.TransitTaps`), the gate hardware driven, and whoever listens (the
passenger display, the technician's status) told.

The reader and the camera are the checkout's `DeviceWatcher`s: each opens its device, reopens it
with backoff when it is lost (a pulled USB reader, a camera that stops), and hands over each
presentation; a card is read once per presentation (it must leave the field before it is read
again). One decision thread takes presentations in order, so a card and a code shown at the same
moment are two taps, decided one after the other. The gate hardware is opened the same way: when it
fails the lane keeps deciding (the display still says GO or STOP) and opens it again with backoff.

Between taps the lane starts the journal's upkeep (rows signed, checkpoint, retention) in a thread of
its own, and writes
`gate-status.json` in the data directory (what `walletpos gate --status` shows from another process).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from drivers.base import CardReader, CodeScanner, ScannedCode
from drivers.gate import GateHardware, GateHardwareError, GateStatus, Indicator
from terminal.payment import FareResult
from terminal.transit import GatePlace, TransitTaps, refusal
from terminal.watchers import ReaderWatcher, ScannerWatcher, release

log = logging.getLogger("walletpos.gate")

STATUS_FILE = "gate-status.json"
UPKEEP_S = 5.0
STATUS_EVERY_S = 2.0
LATENCIES = 2000  # decisions kept for the latency figures
STOP_SHOWN_S = 3.0


@dataclass(frozen=True)
class GateEvent:
    """One decided tap, as the display shows it."""

    result: FareResult
    at: datetime
    via: str  # card | code
    decision_ms: float
    place: GatePlace


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class GateMetrics:
    """Taps per minute, decision latency (tap to gate command) and outcomes, in bounded memory."""

    taps: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # monotonic times
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES))
    outcomes: Counter[str] = field(default_factory=Counter)
    signs: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, result: FareResult, decision_ms: float) -> None:
        with self.lock:
            self.taps.append(time.monotonic())
            self.latencies.append(decision_ms)
            self.outcomes[result.outcome] += 1
            self.signs[result.sign] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            now = time.monotonic()
            per_minute = sum(1 for t in self.taps if now - t <= 60.0)
            latencies = list(self.latencies)
            outcomes, signs = dict(self.outcomes), dict(self.signs)
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        return {"taps_per_minute": per_minute, "taps_total": sum(outcomes.values()),
                "decision_ms": {"p50": round(p50, 3) if p50 is not None else None,
                                "p99": round(p99, 3) if p99 is not None else None,
                                "last": round(latencies[-1], 3) if latencies else None, "samples": len(latencies)},
                "outcomes": outcomes, "signs": signs}


class GateHardwareKeeper:
    """The gate hardware, opened on first use and again with backoff after it failed."""

    def __init__(self, opener: Callable[[], GateHardware] | None, backoff_max: float = 5.0) -> None:
        self.opener = opener
        self.backoff_max = backoff_max
        self.hardware: GateHardware | None = None
        self._backoff = 0.2
        self._next_try = 0.0
        self.problem = "" if opener else "no gate hardware configured"
        self.lock = threading.Lock()

    def get(self) -> GateHardware | None:
        if self.hardware is not None or self.opener is None:
            return self.hardware
        if time.monotonic() < self._next_try:
            return None
        try:
            self.hardware = self.opener()
            self.problem, self._backoff = "", 0.2
            log.info("gate hardware opened: %s", self.hardware.name)
        except (GateHardwareError, OSError) as exc:
            self.problem = str(exc)
            self._next_try = time.monotonic() + self._backoff
            self._backoff = min(self.backoff_max, self._backoff * 2)
        return self.hardware

    def run(self, action: Callable[[GateHardware], None]) -> bool:
        """Do `action` on the hardware; False when it is not there or failed (then it is reopened later)."""
        with self.lock:
            hardware = self.get()
            if hardware is None:
                return False
            try:
                action(hardware)
                return True
            except (GateHardwareError, OSError) as exc:
                log.warning("gate hardware lost: %s", exc)
                self.problem = str(exc)
                with contextlib.suppress(GateHardwareError, OSError):
                    hardware.close()
                self.hardware = None
                self._next_try = time.monotonic() + self._backoff
                return False

    def status(self) -> GateStatus:
        hardware = self.hardware
        if hardware is None:
            return GateStatus("absent" if self.opener else "error", "gate", self.problem)
        return hardware.status()

    def close(self) -> None:
        with self.lock:
            if self.hardware is not None:
                with contextlib.suppress(GateHardwareError, OSError):
                    self.hardware.close()
                self.hardware = None


class GateLane:
    """A gate's reader, camera and hardware, and the thread that decides their taps."""

    def __init__(self, taps: Callable[[], TransitTaps], place: GatePlace, *,
                 open_reader: Callable[[], CardReader] | None = None,
                 open_scanner: Callable[[], CodeScanner] | None = None,
                 open_hardware: Callable[[], GateHardware] | None = None,
                 hold_ms: int = 6000, reader_backoff_s: float = 5.0, camera_backoff_s: float = 5.0,
                 upkeep: Callable[[], None] | None = None, clock: Callable[[], datetime],
                 status_dir: Path | None = None, extra_status: Callable[[], dict[str, Any]] | None = None) -> None:
        self._taps_factory = taps
        self._taps: TransitTaps | None = None
        self.place = place
        self.hold_ms = hold_ms
        self.clock = clock
        self.upkeep = upkeep
        self._upkeep_thread: threading.Thread | None = None
        self.status_dir = status_dir
        self.extra_status = extra_status
        self.metrics = GateMetrics()
        self.hardware = GateHardwareKeeper(open_hardware)
        self._queue: queue.SimpleQueue[tuple[str, Any, float]] = queue.SimpleQueue()
        self.reader = ReaderWatcher(open_reader, self._put, backoff_max=reader_backoff_s) if open_reader else None
        self.scanner = ScannerWatcher(open_scanner, self._put, backoff_max=camera_backoff_s) if open_scanner else None
        self._listeners: list[Callable[[GateEvent], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle_timer: threading.Timer | None = None
        self.last_event: GateEvent | None = None
        self.started_at: float | None = None

    @property
    def taps(self) -> TransitTaps:
        if self._taps is None:
            self._taps = self._taps_factory()
        return self._taps

    def _put(self, kind: str, item: Any) -> None:
        self._queue.put((kind, item, time.perf_counter()))

    def subscribe(self, listener: Callable[[GateEvent], None]) -> None:
        self._listeners.append(listener)

    @property
    def watchers(self) -> list[ReaderWatcher | ScannerWatcher]:
        return [w for w in (self.reader, self.scanner) if w is not None]

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        _ = self.taps  # the fare table is read (and checked) before the first passenger
        self.started_at = time.monotonic()
        self.hardware.run(lambda h: h.set_indicator("off"))
        for watcher in self.watchers:
            watcher.armed.set()  # a gate is always waiting for the next passenger
            watcher.start()
        self._thread = threading.Thread(target=self._run, name="gate-lane", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        for watcher in self.watchers:
            watcher.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._upkeep_thread is not None:
            self._upkeep_thread.join(timeout=30)  # before the journal closes under it
        for watcher in self.watchers:
            if watcher.is_alive():
                watcher.join(timeout=3)
        self._drain()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.hardware.close()

    def _drain(self) -> None:
        while True:
            try:
                kind, item, _ = self._queue.get_nowait()
            except queue.Empty:
                return
            self._release(kind, item)

    def _release(self, kind: str, item: Any) -> None:
        release(kind, item, self.reader)

    # -- deciding -----------------------------------------------------------------------------------

    def _run(self) -> None:
        last_upkeep = last_status = time.monotonic()
        while not self._stop.is_set():
            try:
                kind, item, t0 = self._queue.get(timeout=0.25)
            except queue.Empty:
                now = time.monotonic()
                if now - last_upkeep >= UPKEEP_S:
                    last_upkeep = now
                    self._upkeep()
                if now - last_status >= STATUS_EVERY_S:
                    last_status = now
                    self.write_status()
                continue
            try:
                self.decide(kind, item, t0)
            except Exception:  # one bad presentation must never stop the gate: log it, keep going
                log.exception("gate: deciding a %s failed", kind)
            finally:
                self._release(kind, item)

    def _upkeep(self) -> None:
        """Start the journal's upkeep in a thread of its own (one at a time): retention, a checkpoint
        or the WAL copy-back can take seconds on a large journal, and a tap arriving meanwhile must
        be decided at once, not after it (the journal's own locks keep each write short)."""
        if self.upkeep is None or (self._upkeep_thread is not None and self._upkeep_thread.is_alive()):
            return
        self._upkeep_thread = threading.Thread(target=self._run_upkeep, name="gate-upkeep", daemon=True)
        self._upkeep_thread.start()

    def _run_upkeep(self) -> None:
        assert self.upkeep is not None
        try:
            self.upkeep()
        except Exception:
            log.exception("gate upkeep failed")

    def decide(self, kind: str, item: Any, t0: float) -> GateEvent:
        """Decide one presentation (a card session or a scanned code), drive the gate, tell listeners."""
        try:
            if kind == "card":
                result = self.taps.tap_card(item, self.place, started=t0)
            else:
                code: ScannedCode = item
                result = self.taps.tap_code(code.text, self.place, started=t0)
        except Exception:
            log.exception("gate: a tap could not be decided")
            result = refusal(self.place, "internal_error", "see_staff", t0)
        self._drive(result)
        decision_ms = (time.perf_counter() - t0) * 1000
        self.metrics.record(result, decision_ms)
        event = GateEvent(result, self.clock(), kind, decision_ms, self.place)
        self.last_event = event
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("gate: a listener failed")
        return event

    def _drive(self, result: FareResult) -> None:
        if result.outcome == "same_tap":
            return  # the same tap read again: the gate is already doing what it said
        if result.opens_gate:
            hold = self.hold_ms

            def go(h: GateHardware) -> None:
                h.open_for_one(hold)
                h.set_indicator("green")
                h.beep("go")

            self.hardware.run(go)
            self._back_to_idle(hold / 1000)
            return
        colour: Indicator = "amber" if result.sign == "see_staff" else "red"

        def stop(h: GateHardware) -> None:
            h.set_indicator(colour)
            h.beep("stop")
            if "anti_passback" in result.reasons:
                h.alarm(True)

        self.hardware.run(stop)
        self._back_to_idle(STOP_SHOWN_S)

    def _back_to_idle(self, after_s: float) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()

        def idle() -> None:
            def off(h: GateHardware) -> None:
                h.set_indicator("off")
                if h.status().alarm:
                    h.alarm(False)

            self.hardware.run(off)

        self._idle_timer = threading.Timer(after_s, idle)
        self._idle_timer.daemon = True
        self._idle_timer.start()

    # -- status -------------------------------------------------------------------------------------

    def device_states(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for kind, watcher in (("reader", self.reader), ("camera", self.scanner)):
            if watcher is None:
                out[kind] = {"state": "not attached", "name": "", "detail": ""}
            else:
                s = watcher.status
                out[kind] = {"state": s.state, "name": s.name, "detail": s.detail}
        hw = self.hardware.status()
        out["gate"] = {"state": hw.state, "name": hw.name, "detail": hw.detail, "indicator": hw.indicator,
                       "opened": str(hw.opened)}
        return out

    def status(self) -> dict[str, Any]:
        table = self._taps.table if self._taps is not None else None
        out: dict[str, Any] = {
            "gate": {"id": self.place.gate_id, "station": self.place.station, "direction": self.place.direction,
                     "fare_table": table.label if table else None},
            "devices": self.device_states(), **self.metrics.snapshot(),
            "uptime_s": round(time.monotonic() - self.started_at, 1) if self.started_at is not None else None,
            "pid": os.getpid(),
        }
        if self.extra_status is not None:
            with contextlib.suppress(Exception):
                out.update(self.extra_status())
        return out

    def write_status(self) -> None:
        """`gate-status.json` in the data directory (atomically), for `walletpos gate --status`."""
        if self.status_dir is None:
            return
        body = {**self.status(), "written_at": self.clock().isoformat()}
        path = self.status_dir / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(body, default=str), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("gate status not written: %s", exc)


def read_status_file(data_dir: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((data_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


__all__ = ["STATUS_FILE", "GateEvent", "GateHardwareKeeper", "GateLane", "GateMetrics", "percentile",
           "read_status_file"]
