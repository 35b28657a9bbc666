"""`walletpos operators|refund|void|report|receipt`: back office from the command line.

PINs are never arguments (they would land in shell history and `ps`): they are asked for on the
terminal, or read from standard input with --pin-stdin (one PIN per line, for scripts)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from terminal.commands.common import Exit, UsageError, open_service


def _pins(args: argparse.Namespace, prompts: list[str]) -> list[str]:
    if getattr(args, "pin_stdin", False):
        lines = sys.stdin.read().splitlines()
        if len(lines) < len(prompts):
            raise UsageError(f"--pin-stdin: expected {len(prompts)} line(s) on standard input")
        return [line.strip() for line in lines[: len(prompts)]]
    if not sys.stdin.isatty():
        raise UsageError("a PIN is needed and there is no terminal to type it on: run this on a terminal, "
                         "or give the PIN on standard input with --pin-stdin")
    try:
        return [getpass.getpass(p) for p in prompts]
    except EOFError:
        raise UsageError("no PIN was typed (end of input); give it on standard input with --pin-stdin") from None


def _local(svc: Any, moment: Any) -> str:
    """A time as the terminal's people read it: local, with the zone's name."""
    local = moment.astimezone(svc.zone)
    return f"{local.strftime('%Y-%m-%d %H:%M:%S')} {local.tzname()}"


def cmd_operators_add(args: argparse.Namespace) -> int:
    from terminal.operators import OperatorError

    pin, again = _pins(args, ["New PIN: ", "Same PIN again: "])
    if pin != again:
        raise UsageError("the two PINs differ")
    with open_service(args) as svc:
        try:
            op = svc.operators.add(args.id, args.name, args.role, pin, now=svc.clock(), actor="cli")
        except OperatorError as exc:
            raise UsageError(exc.message) from None
    print(f"operator {op.id} ({op.role}) saved")
    return Exit.OK


def cmd_operators_list(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        records = svc.operators.records()
    rows = [{"id": r["id"], "name": r["name"], "role": r["role"], "active": bool(r["active"]),
             "failed_attempts": r["failed_attempts"], "locked_until": r["locked_until"]} for r in records]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    elif not rows:
        print("no operators yet: add one with `walletpos operators add --id ID --name NAME --role cashier`")
    else:
        for r in rows:
            lock = f"  LOCKED until {r['locked_until']}" if r["locked_until"] else ""
            print(f"{r['id']:<12} {r['role']:<11} {r['name']}{lock}")
    return Exit.OK


def cmd_operators_unlock(args: argparse.Namespace) -> int:
    from terminal.operators import OperatorError

    with open_service(args) as svc:
        try:
            svc.operators.unlock(args.id, now=svc.clock(), actor="cli")
        except OperatorError as exc:
            raise UsageError(exc.message) from None
    print(f"operator {args.id} unlocked")
    return Exit.OK


def _print_result(args: argparse.Namespace, svc: Any, result: Any, what: str) -> int:
    from terminal.receipts import short_reference

    locale = svc.config.display.locale
    row = result.row
    out = {"ok": result.ok, "problems": list(result.problems), "message": result.message(locale),
           "transaction_id": row.id if row else None, "reference": row.short_ref if row else None,
           "business_date": row.business_date.isoformat() if row else None,
           "amount": row.amount.minor if row else None}
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
    elif result.ok:
        print(f"{what} recorded: {short_reference(row)} at {_local(svc, row.created_at)} ({row.amount})")
        print("\n".join(svc.receipt_lines(row)))
    else:
        print(f"{what} refused: {out['message']}", file=sys.stderr)
    return Exit.OK if result.ok else Exit.DECLINED


def cmd_refund(args: argparse.Namespace) -> int:
    from terminal.core.money import parse_amount
    from terminal.errors import MoneyError

    (pin,) = _pins(args, [f"Supervisor {args.supervisor} PIN: "])
    with open_service(args) as svc:
        amount = None
        if args.amount:
            try:
                amount = parse_amount(args.amount, svc.currency, decimal_sep=svc.config.display.decimal_separator,
                                      group_sep=svc.config.display.group_separator)
            except MoneyError as exc:
                raise UsageError(f"--amount: {exc}") from None
        result = svc.refund(args.reference, amount, operator=args.operator, supervisor_id=args.supervisor,
                            supervisor_pin=pin)
        return _print_result(args, svc, result, "refund")


def cmd_void(args: argparse.Namespace) -> int:
    (pin,) = _pins(args, [f"Supervisor {args.supervisor} PIN: "])
    with open_service(args) as svc:
        result = svc.void_last(operator=args.operator, supervisor_id=args.supervisor, supervisor_pin=pin)
        return _print_result(args, svc, result, "void")


def cmd_report(args: argparse.Namespace) -> int:
    """X-report, or with --close the Z-report: closing needs a supervisor (--supervisor and the PIN,
    typed or with --pin-stdin), and says what is not sent to the backend yet."""
    from terminal.dayclose import DayCloseRefused

    if args.close and not args.supervisor:
        raise UsageError("--close needs a supervisor: --supervisor ID (the PIN is asked, or read with --pin-stdin)")
    pin = _pins(args, [f"Supervisor {args.supervisor} PIN: "])[0] if args.close else None
    with open_service(args) as svc:
        locale = svc.config.display.locale
        unsynced = svc.unsynced() if svc.storage_problem is None else (0, 0)
        if args.close:
            try:
                report, paths = svc.close_day(operator=args.operator, supervisor_id=args.supervisor, supervisor_pin=pin,
                                              locale=locale)
            except DayCloseRefused as exc:
                print(f"walletpos: day not closed: {exc.words(locale)}", file=sys.stderr)
                return Exit.DECLINED
        else:
            report, paths = svc.day_report(), []
        rows, amount = unsynced
        if args.json:
            print(json.dumps({**report.to_dict(), "files": [str(p) for p in paths],
                              "unsynced": {"count": rows, "amount": amount}}, ensure_ascii=False, indent=2))
        else:
            print("\n".join(svc.report_lines(report, locale, closed_by=args.supervisor if args.close else None,
                                             operator=args.operator)))
            for p in paths:
                print(f"written: {p}")
        if rows:
            from terminal.core.money import Money

            sync = "run `walletpos sync --once` when the backend can be reached" if svc.sync_enabled() else \
                "the backend is switched off in config"
            print(f"walletpos: {rows} transaction(s) ({Money(amount, svc.currency)}) are not sent to the backend "
                  f"yet ({sync}); they stay queued and count as 'Waiting to sync'", file=sys.stderr)
    return Exit.OK


def cmd_receipt(args: argparse.Namespace) -> int:
    from terminal.receipts import short_reference

    with open_service(args) as svc:
        found = svc.lookup(args.reference, sales_only=False)
        if found.row is None:
            if found.problem == "ambiguous_reference":
                choices = "; ".join(f"{short_reference(r)} {r.kind} {r.amount}" for r in found.candidates[:6])
                raise UsageError(f"reference {args.reference!r} is ambiguous ({choices}): "
                                 "give it with its day, e.g. 2026-11-20/0042")
            raise UsageError(f"no transaction {args.reference!r}")
        print("\n".join(svc.receipt_lines(found.row)))
        if args.save:
            print(f"written: {svc.save_receipt(found.row)}")
    return Exit.OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("operators", parents=[common], help="cashiers, supervisors and technicians")
    osub = p.add_subparsers(dest="operators_command", metavar="ACTION")
    a = osub.add_parser("add", parents=[common], help="add an operator or change their name, role or PIN")
    a.add_argument("--id", required=True)
    a.add_argument("--name", required=True)
    a.add_argument("--role", required=True, choices=["cashier", "supervisor", "technician"])
    a.add_argument("--pin-stdin", action="store_true", help="read the PIN twice from standard input")
    a.set_defaults(handler=cmd_operators_add)
    ls = osub.add_parser("list", parents=[common], help="operators and their lock state")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_operators_list)
    u = osub.add_parser("unlock", parents=[common], help="clear an operator's lockout")
    u.add_argument("id")
    u.set_defaults(handler=cmd_operators_unlock)

    r = sub.add_parser("refund", parents=[common], help="refund a sale (supervisor PIN; within the refund window)")
    r.add_argument("reference", help="the sale's reference: 0042 (today, or the one day that has it), "
                                     "2026-11-20/0042, or its transaction id")
    r.add_argument("--amount", help="amount to refund (default: all that is left)")
    r.add_argument("--supervisor", required=True, help="supervisor operator id")
    r.add_argument("--operator", help="cashier operator id")
    r.add_argument("--pin-stdin", action="store_true", help="read the supervisor PIN from standard input")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_refund)

    v = sub.add_parser("void", parents=[common], help="void the last sale of the day (supervisor PIN)")
    v.add_argument("--supervisor", required=True, help="supervisor operator id")
    v.add_argument("--operator", help="cashier operator id")
    v.add_argument("--pin-stdin", action="store_true", help="read the supervisor PIN from standard input")
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=cmd_void)
    register_support(sub, common)

    d = sub.add_parser("report", parents=[common], help="day report: X (interim) or, with --close, Z")
    d.add_argument("--close", action="store_true",
                   help="close the batch (Z-report, written to reports/); needs --supervisor and the PIN")
    d.add_argument("--supervisor", help="supervisor who approves the close (the PIN is asked)")
    d.add_argument("--pin-stdin", action="store_true", help="read the supervisor PIN from standard input")
    d.add_argument("--operator", help="operator at the terminal (cashier)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(handler=cmd_report)

    c = sub.add_parser("receipt", parents=[common], help="show (and --save) the receipt of a transaction")
    c.add_argument("reference", help="0042, 2026-11-20/0042, or a transaction id")
    c.add_argument("--save", action="store_true")
    c.set_defaults(handler=cmd_receipt)


def cmd_support_bundle(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        if args.upload:
            from terminal.backend import BackendError

            try:
                ticket = svc.upload_support_bundle("technician")
            except BackendError as exc:
                print(f"walletpos: {exc.title}: {exc.message}", file=sys.stderr)
                return Exit.ONLINE_FAILED
            if args.json:
                print(json.dumps({"ticket": ticket.ticket, "size": ticket.size, "sha256": ticket.sha256,
                                  "received_at": ticket.received_at.isoformat()}, indent=2))
            else:
                print(f"support bundle sent ({ticket.size // 1024} KiB); ticket {ticket.ticket}")
            return Exit.OK
        if args.drive is not None:
            path = svc.support_bundle_to_drive(Path(args.drive) if args.drive else None)
        else:
            path = svc.support_bundle(Path(args.out) if args.out else None)
    print(path)
    return Exit.OK


def register_support(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("support-bundle", parents=[common],
                       help="a zip for support: status, doctor checks, devices, sync, config, recent transactions, "
                            "logs, failed taps (no keys, no card numbers)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="FILE", help="zip file to write (default: <data dir>/support/...)")
    where.add_argument("--drive", metavar="DIR", nargs="?", const="",
                       help="write it onto a removable drive: its mount point (alone: the first one mounted)")
    where.add_argument("--upload", action="store_true",
                       help="send it to the backend; prints the ticket id to read out to support")
    p.add_argument("--json", action="store_true", help="with --upload: print the ticket as JSON")
    p.set_defaults(handler=cmd_support_bundle)
