"""`walletpos doctor`: every part a terminal needs, checked and measured, with for each failure the one
thing to do next (as `flutter doctor` and `brew doctor` do for their tools).

Areas, one small module each:

- `system`: the packages the configured devices need, and pcscd for a PC/SC reader;
- `readers` (area `reader`): the reader, its model and firmware, the ATR of a card on it and what it
  means, the round trip of a SELECT;
- `camera`: opens, resolution, measured frame rate, sharpness, decode rate over live frames;
- `link` (areas `backend` and `clock`): name resolution, TCP, TLS handshake, certificate pin,
  enrolment, latency p50/p95 of signed requests, and the clock's skew against the backend;
- `storage` (area `journal`): integrity since the last signed checkpoint, file and WAL size, free disk;
- `sync_queue` (area `queue`): depth, age of the oldest row, last error;
- `limits`: the local limits as the backend tightened them.

The areas run side by side (threads: they wait on devices and the network, not on the CPU), so a
healthy terminal is checked within a few seconds; each check carries its own time. A check is
`pass`, `warn`, `fail` or `skip` (nothing to check, or a layer below it failed); the run's exit
code is 0 (healthy), 20 (warnings) or 21 (a failure): `terminal.doctor.checks`.

`terminal.service.Service.doctor` builds the `DoctorContext` from the running terminal.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterable

from terminal.doctor.camera import check_camera
from terminal.doctor.checks import (
    AREAS,
    EXIT_FAILURES,
    EXIT_HEALTHY,
    EXIT_WARNINGS,
    Check,
    DoctorReport,
    advice,
    order,
)
from terminal.doctor.context import DoctorContext
from terminal.doctor.limits import check_limits
from terminal.doctor.link import check_link
from terminal.doctor.readers import check_reader
from terminal.doctor.storage import check_journal
from terminal.doctor.sync_queue import check_queue
from terminal.doctor.system import check_system
from terminal.journal import utc_text

log = logging.getLogger("walletpos.doctor")

AreaCheck = Callable[[DoctorContext], list[Check]]

# the `backend` runner also makes the `clock` check (the skew is read from the heartbeats)
RUNNERS: dict[str, AreaCheck] = {
    "system": check_system,
    "reader": check_reader,
    "camera": check_camera,
    "backend": check_link,
    "journal": check_journal,
    "queue": check_queue,
    "limits": check_limits,
}


def _guarded(area: str, run: AreaCheck, ctx: DoctorContext) -> list[Check]:
    t0 = time.perf_counter()
    try:
        return run(ctx)
    except Exception as exc:  # a bug in one check must not hide the others; the log has the traceback
        log.exception("doctor check %s crashed", area)
        return [Check(area, "internal", "fail", f"check crashed: {type(exc).__name__}", str(exc)[:300],
                      ms=(time.perf_counter() - t0) * 1000, **advice("internal"))]


def run_doctor(ctx: DoctorContext, areas: Iterable[str] | None = None) -> DoctorReport:
    """Run the checks of `areas` (default: all; `clock` comes with `backend`) side by side."""
    wanted = list(AREAS if areas is None else areas)
    runners = {("backend" if area == "clock" else area) for area in wanted}
    unknown = sorted(r for r in runners if r not in RUNNERS)
    if unknown:
        raise ValueError(f"unknown doctor area(s) {', '.join(unknown)}; known: {', '.join(AREAS)}")
    started = ctx.clock()
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(runners), thread_name_prefix="walletpos-doctor") as pool:
        futures = [pool.submit(_guarded, name, RUNNERS[name], ctx) for name in sorted(runners)]
        checks = [check for future in futures for check in future.result()]
    checks = [c for c in checks if c.area in wanted or c.name == "internal"]
    return DoctorReport(order(checks), utc_text(started), (time.perf_counter() - t0) * 1000,
                        ctx.config.terminal.id)


__all__ = ["AREAS", "EXIT_FAILURES", "EXIT_HEALTHY", "EXIT_WARNINGS", "Check", "DoctorContext", "DoctorReport",
           "run_doctor"]
