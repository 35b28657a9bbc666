"""`walletpos tap`: wait for a contactless card, read it with the EMV kernel, decide, journal, print.

Exit codes: 0 approved, 10 declined, 11 online authorisation needed but the backend did not answer
(and the offline rules declined), 12 customer verification needed, 13 the card could not be read,
14 no card within the timeout, 15 reader unavailable, 4 storage.

`walletpos tap --replay FILE` reads a recorded card (a kept failed tap, `terminal.tapstore`, or a
shared vectors' transcript) through the kernel and prints the exchange, decoded and masked, with the
time of each command; nothing is journaled. Exit 0 when the kernel read the card, 13 when it did not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from terminal.commands.common import Exit, UsageError, open_service


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("tap", parents=[common], help="take one contactless card payment",
                       description="Wait for a card on the reader, run the EMV kernel, apply the offline rules "
                                   "(online when they say so), journal the result and print it.")
    p.add_argument("--amount", help="amount in the terminal currency, e.g. 12.34 (required but with --replay)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--reader", metavar="PATTERN", help="PC/SC reader whose name contains PATTERN")
    which.add_argument("--nfc", metavar="DEVICE", help="nfcpy device, e.g. usb:072f:2200 or udp:localhost:54321")
    which.add_argument("--device", metavar="SPEC", help="reader as in [reader] device: sim:, pcsc:..., nfc:...")
    which.add_argument("--replay", metavar="FILE",
                       help="read a recorded card instead: a failed tap the terminal kept (<data dir>/traces/) or "
                            "a transcript in the shared vectors' format; the kernel reads it, nothing is journaled "
                            "(exit 0 read, 13 not read)")
    p.add_argument("--sim-card", metavar="PROFILE",
                   help="with the simulated reader: tap this virtual card (visa, mastercard, unionpay, ...)")
    p.add_argument("--timeout", type=float, metavar="S", help="seconds to wait for a card "
                                                              "(default: [reader] card_timeout_ms)")
    p.add_argument("--trace", action="store_true", help="include the APDU trace (card-holder data masked)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_tap)


def _device(args: argparse.Namespace, svc: Any) -> str:
    if args.reader is not None:
        return f"pcsc:{args.reader}"
    if args.nfc is not None:
        return f"nfc:{args.nfc}"
    return args.device or svc.config.reader.device


def _exit_code(result: Any) -> int:
    from terminal.payment import STORAGE_FAILURE

    if result.outcome == "approved":
        return Exit.OK
    if result.outcome == "storage" or STORAGE_FAILURE in result.reasons:  # declined: the journal cannot record
        return Exit.STORAGE
    if result.outcome == "need_cvm":
        return Exit.NEED_CVM
    if result.outcome == "declined":
        return Exit.ONLINE_FAILED if "backend_unreachable" in result.reasons else Exit.DECLINED
    if result.outcome == "reader_unavailable":
        return Exit.READER_UNAVAILABLE
    return Exit.READ_ERROR


def _print(result: Any, args: argparse.Namespace, svc: Any) -> None:
    from terminal.core.money import format_money

    out = result.to_dict()
    if not args.trace:
        out.pop("apdu_trace")
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    display = svc.config.display
    amount = format_money(result.payment.row.amount if result.payment and result.payment.row else args.money,
                          decimal_sep=display.decimal_separator, group_sep=display.group_separator)
    print(f"{result.outcome.upper().replace('_', ' ')}  {amount}")
    print(f"  {result.message}")
    if result.read is not None:
        read = result.read
        print(f"  card        {read.scheme} {read.masked_pan}  ({read.label}, AID {read.aid})")
        print(f"  cryptogram  {result.read.cid}  cvm {result.read.cvm}  apdus {result.read.apdu_count}")
    if out["transaction_id"]:
        print(f"  journal     #{out['sequence']}  {out['transaction_id']}  ({out['auth_mode']})")
    print("  timings ms  " + "  ".join(f"{k} {v:.2f}" for k, v in out["timings_ms"].items()))
    for line in out.get("apdu_trace", []):
        print(f"    > {line['command']}  < {line['sw']} {line['response']}")


def print_tap_check(check: Any, *, as_json: bool) -> None:
    """A test tap or replay (`terminal.tapstore.TapCheck`): outcome, card, each command with its time
    and the card's answer decoded (card numbers masked)."""
    if as_json:
        print(json.dumps(check.to_dict(), ensure_ascii=False, indent=2))
        return
    print(f"{check.outcome.upper().replace('_', ' ')}  {check.message}")
    print(f"  reader      {check.reader}" + (f"  ATR {check.atr}" if check.atr else ""))
    if check.read is not None:
        read = check.read
        print(f"  card        {read.scheme} {read.masked_pan}  ({read.label}, AID {read.aid}, cryptogram {read.cid})")
    if check.saved:
        print(f"  kept as     {check.saved}")
    print(f"  total       {check.total_ms:.2f} ms")
    for shown in check.shown():
        print(f"  > {shown.name:<28} {shown.sw}  {shown.ms:8.3f} ms   {shown.command}")
        for line in shown.tree:
            print(f"      {line}")


def cmd_replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from terminal.commands.qr import _amount

    with open_service(args) as svc:
        amount = _amount(svc, args.amount) if args.amount else None
        check = svc.replay_tap(Path(args.replay), amount)
    print_tap_check(check, as_json=args.json)
    return Exit.OK if check.ok else Exit.READ_ERROR


def cmd_tap(args: argparse.Namespace) -> int:
    from drivers.base import ReaderUnavailableError
    from terminal.commands.qr import _amount

    if args.replay:
        return cmd_replay(args)
    if not args.amount:
        raise UsageError("--amount is required (e.g. --amount 12.34)")
    with open_service(args) as svc:
        try:
            args.money = _amount(svc, args.amount)
        except UsageError as exc:
            print(f"walletpos: {exc.title}: {exc.message}", file=sys.stderr)
            return Exit.USAGE
        device = _device(args, svc)
        if args.sim_card and not device.startswith("sim:"):
            print("walletpos: Usage error: --sim-card only works with the simulated reader (sim:)", file=sys.stderr)
            return Exit.USAGE
        timeout = args.timeout if args.timeout is not None else svc.config.reader.card_timeout_ms / 1000
        try:
            reader = svc.open_reader(device)
        except ReaderUnavailableError as exc:
            print(f"walletpos: {exc.title}: {exc.message}", file=sys.stderr)
            return Exit.READER_UNAVAILABLE
        with reader:
            if args.sim_card:
                from drivers.sim.cards import make_card

                try:
                    reader.tap(make_card(args.sim_card))
                except ValueError:
                    print(f"walletpos: Usage error: no virtual card profile {args.sim_card!r}", file=sys.stderr)
                    return Exit.USAGE
            if not args.json:
                print(f"Present a card to {reader.name} ...", file=sys.stderr)
            deadline = time.monotonic() + timeout
            session = None
            try:
                while session is None and time.monotonic() < deadline:
                    session = reader.wait_for_card(min(0.5, max(0.01, deadline - time.monotonic())))
            except ReaderUnavailableError as exc:
                print(f"walletpos: {exc.title}: {exc.message}", file=sys.stderr)
                return Exit.READER_UNAVAILABLE
            if session is None:
                print(f"walletpos: no card was presented within {timeout:g} s", file=sys.stderr)
                return Exit.NO_CARD
            started = time.perf_counter()
            with session:
                result = svc.pay_card(session, args.money, started=started)
        _print(result, args, svc)
        return _exit_code(result)
