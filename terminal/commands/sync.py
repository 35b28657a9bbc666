"""`walletpos sync` and `walletpos backend`: store-and-forward with the wallet backend.

    walletpos sync --once [--json]      one sync cycle now (even while the circuit is open); exit 0 if
                                        it succeeded, 11 if the backend could not be reached or refused
    walletpos sync --status [--json]    queue depth, oldest pending age, last success, last error, circuit
    walletpos sync                      keep syncing in the foreground until interrupted
    walletpos backend enrol --token T   enrol this terminal with the configured backend (once)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from terminal.commands.common import Exit, open_service, require_storage


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sync", parents=[common], help="upload the journal to the backend, fetch deny list and limits")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one sync cycle now, then print what happened")
    mode.add_argument("--status", action="store_true", help="queue depth, oldest pending, last success and error")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_sync)

    b = sub.add_parser("backend", parents=[common], help="the wallet backend: enrolment")
    bsub = b.add_subparsers(dest="backend_command", metavar="ACTION")
    e = bsub.add_parser("enrol", parents=[common], help="enrol this terminal with the backend (one-time token)")
    e.add_argument("--token", required=True, help="the one-time enrolment token from the bank")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(handler=cmd_enrol)


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def cmd_sync(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        if args.status:
            status = svc.sync_status()
            if args.json:
                _print_json(status.to_dict())
                return Exit.OK
            print(f"backend     {status.backend_url} ({'enabled' if status.enabled else 'switched off'}, "
                  f"{'enrolled' if status.enrolled else 'NOT ENROLLED'})")
            if status.enrolment_problem:
                print(f"            {status.enrolment_problem}")
            print(f"queue       {status.queue_depth} rows waiting; oldest {status.oldest_pending_at or '-'} "
                  f"({_age(status.oldest_pending_age_s)} ago)")
            print(f"last sync   {status.last_success_at or 'never'}")
            print(f"last try    {status.last_attempt_at or 'never'}")
            print(f"last error  {status.last_error or '-'}" + (f" at {status.last_error_at}" if status.last_error
                                                               else ""))
            print(f"circuit     {status.breaker_state} ({status.consecutive_failures} failures in a row)")
            print(f"after sync  {status.declined_after_offline} declined after offline approval, "
                  f"{status.rejected} rejected by the backend")
            print(f"versions    deny list {status.deny_list_version}, limits {status.limits_version}, "
                  f"issuer keys {status.issuer_keys_version}")
            return Exit.OK
        require_storage(svc)  # without the journal there is nothing to sync (and no sync worker)
        if not svc.sync_enabled():
            print("walletpos: the backend is switched off ([backend] enabled = false)", file=sys.stderr)
            return Exit.ONLINE_FAILED
        if args.once:
            report = svc.sync_once(force=True)
            if args.json:
                _print_json(report.to_dict())
            else:
                print("\n".join(report.lines()))
            if not report.ok:
                return Exit.ONLINE_FAILED
            # the link works, but what the backend refused (or a journal on hold) waits for a person:
            # a monitoring script must not read that as a healthy sync
            status = svc.sync_status()
            if report.rejected or status.rejected or status.hold:
                print(f"walletpos: {status.rejected} row(s) rejected by the backend"
                      + (f"; offline approvals on hold: {status.hold}" if status.hold else "")
                      + " (walletpos sync --status, walletpos doctor)", file=sys.stderr)
                return Exit.NEEDS_A_PERSON
            return Exit.OK
        return _run_foreground(svc)


def _run_foreground(svc: Any) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    svc.start_sync()
    print(f"syncing with {svc.config.backend.url} every {svc.config.sync.interval_ms / 1000:g} s; Ctrl-C stops",
          file=sys.stderr)
    while not stop.wait(1.0):
        pass
    svc.stop_sync()
    return Exit.OK


def cmd_enrol(args: argparse.Namespace) -> int:
    from terminal.backend import BackendError
    with open_service(args) as svc:
        require_storage(svc)
        if not svc.sync_enabled():
            print("walletpos: the backend is switched off ([backend] enabled = false)", file=sys.stderr)
            return Exit.ONLINE_FAILED
        try:
            enrolment = svc.enrol_backend(args.token)
        except BackendError as exc:
            print(f"walletpos: {exc.title}: {exc.message}", file=sys.stderr)
            return Exit.ONLINE_FAILED
    if args.json:
        _print_json(enrolment.to_dict())
    else:
        print(f"terminal {enrolment.terminal_id} enrolled with {enrolment.backend_url} at {enrolment.enrolled_at}; "
              f"card data is sealed to key {enrolment.sealing_key_id}")
    return Exit.OK
