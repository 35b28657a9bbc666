"""`walletpos doctor [--json]`: every part of the terminal checked (`terminal.doctor`), one line each with
what it measured, and for each failure the one thing to do next.

Exit codes (for monitoring scripts): 0 every check passed (or had nothing to check), 20 warnings
only (the terminal works; look soon), 21 at least one check failed; as for every command, 2 for a
usage error and 3 for a config error.
"""

from __future__ import annotations

import argparse
from typing import Any

from terminal.commands.common import UsageError, open_service, print_json

MARKS = {"pass": "[✓]", "warn": "[!]", "fail": "[✗]", "skip": "[-]"}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    # The doctor's areas are checked when the command runs: building the parser (every command,
    # `walletpos tui` too) does not load the doctor.
    p = sub.add_parser("doctor", parents=[common], help="check every part of the terminal and say what to fix",
                       description="Check the system packages and pcscd, the reader, the camera, the backend link "
                                   "and clock, the journal, the queue and the limits in force. Exit 0 healthy, "
                                   "20 warnings, 21 a failure.")
    p.add_argument("--json", action="store_true", help="print JSON (each check with its figures and time)")
    p.add_argument("--area", action="append", metavar="AREA",
                   help="only this area (repeat for more): system, reader, camera, backend, clock, journal, "
                        "queue, limits")
    p.add_argument("--camera-seconds", type=float, default=1.5, metavar="S",
                   help="how long to sample the camera (default 1.5)")
    p.add_argument("--requests", type=int, default=5, metavar="N",
                   help="signed heartbeats for the backend latency and the clock (default 5)")
    p.set_defaults(handler=cmd_doctor)


def report_lines(report: Any) -> list[str]:
    """The report for people: one line per check, the detail and the next step under a failure."""
    lines = [f"walletpos doctor  terminal {report.terminal_id}  {report.started_at}", ""]
    for check in report.checks:
        ms = f"{check.ms:7.1f} ms" if check.ms >= 0.05 else ""
        lines.append(f"{MARKS[check.status]} {check.area:<8} {check.name:<10} {check.figure:<58} {ms}".rstrip())
        if check.status in ("warn", "fail"):
            if check.detail:
                lines.append(f"      {check.detail}")
            if check.next_step:
                lines.append(f"      -> {check.next_step}")
        elif check.status == "skip" and check.detail:
            lines.append(f"      {check.detail}")
    counts = report.counts()
    lines += ["", f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed, {counts['skip']} "
                  f"skipped in {report.total_ms / 1000:.1f} s (exit {report.exit_code})"]
    return lines


def cmd_doctor(args: argparse.Namespace) -> int:
    from terminal.doctor.checks import AREAS

    unknown = [area for area in args.area or () if area not in AREAS]
    if unknown:
        raise UsageError(f"--area: no area {', '.join(unknown)}; the areas are {', '.join(AREAS)}")
    if args.camera_seconds <= 0 or args.camera_seconds > 30:
        raise UsageError("--camera-seconds: from 0.1 to 30")
    if not 1 <= args.requests <= 50:
        raise UsageError("--requests: from 1 to 50")
    with open_service(args) as svc:
        report = svc.doctor(args.area, camera_seconds=args.camera_seconds, latency_requests=args.requests)
    if args.json:
        print_json(report.to_dict())
    else:
        print("\n".join(report_lines(report)))
    return int(report.exit_code)
