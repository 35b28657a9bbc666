"""`walletpos qr`: show the terminal's dynamic merchant code; `walletpos scan`: read codes from a
camera, a video, an image or a folder of images, and optionally pay with the first payment code."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from terminal.commands.common import Exit, UsageError, open_service, require_storage


def _amount(svc: Any, text: str) -> Any:
    from terminal.core.money import parse_amount
    from terminal.errors import MoneyError

    display = svc.config.display
    try:
        return parse_amount(text, svc.currency, decimal_sep=display.decimal_separator,
                            group_sep=display.group_separator)
    except MoneyError as exc:
        raise UsageError(f"--amount: {exc}") from None


def _terminal_qr(text: str) -> str:
    import qrcode

    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(text.encode("utf-8"))
    code.make(fit=True)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)  # light quiet zone and modules drawn light-on-dark terminals
    return out.getvalue()


def write_png(text: str, path: Path, module_px: int = 8) -> None:
    """The code as a PNG (black on white, 4-module quiet zone, error correction M)."""
    from drivers.qrimage import code_png
    from terminal.errors import StorageError

    try:
        path.write_bytes(code_png(text, module_px=module_px))
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _usage_errors(handler: Any) -> Any:
    """Usage errors end the command with exit code 2 here, whichever copy of terminal.cli raised them
    (under `python -m terminal.cli` the running module is __main__, not terminal.cli)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except UsageError as exc:
            print(f"walletpos: {exc.title}: {exc.message}", file=sys.stderr)
            return Exit.USAGE

    return run


@_usage_errors
def cmd_qr(args: argparse.Namespace) -> int:
    from terminal.backend import NotEnrolled
    from terminal.codepay import MerchantCodeUnavailable
    from terminal.core.money import format_money

    with open_service(args) as svc:
        amount = _amount(svc, args.amount)
        require_storage(svc)  # the code is journaled before it is shown
        try:
            mqr = svc.merchant_qr(amount)
        except (MerchantCodeUnavailable, NotEnrolled) as exc:  # the backend must know a code before it is shown
            print(f"walletpos: {exc.title}: {exc.message}", file=sys.stderr)
            return Exit.ONLINE_FAILED
        display = svc.config.display
    if args.png:
        write_png(mqr.payload, Path(args.png))
    if args.json:
        print(json.dumps({**mqr.to_dict(), "png": args.png}, ensure_ascii=False, indent=2))
        return Exit.OK
    shown = format_money(amount, decimal_sep=display.decimal_separator, group_sep=display.group_separator)
    print(f"Customer scans this code with the wallet app to pay {shown}")
    print(_terminal_qr(mqr.payload), end="")
    print(f"payload    {mqr.payload}")
    print(f"reference  {mqr.reference}  (transaction {mqr.transaction_id})")
    print(f"valid to   {mqr.to_dict()['valid_until']}  (a running terminal closes it then: qr.merchant_code_minutes)")
    if args.png:
        print(f"png        {args.png}")
    return Exit.OK


def _describe(svc: Any, text: str) -> dict[str, Any]:
    """kind, the text as it may be shown, and what is wrong with it (if anything)."""
    from terminal.core import qrpay
    from terminal.core.cardmask import mask_card_numbers
    from terminal.errors import QrPayloadError

    prefixes = svc.config.qr.numeric_prefixes
    kind = qrpay.kind_of(text, prefixes)
    try:
        code = qrpay.classify(text, prefixes)
    except QrPayloadError as exc:
        shown = text if kind in (qrpay.CodeKind.MPM, qrpay.CodeKind.WALLET_SIGNED) else f"<{kind.value} code>"
        return {"kind": kind.value, "text": qrpay.masked_text(shown, kind), "valid": False, "problem": exc.reason,
                "message": mask_card_numbers(exc.message)}
    out: dict[str, Any] = {"kind": code.kind.value, "text": qrpay.display_text(code, text), "valid": True}
    if isinstance(code, qrpay.MerchantPresentedCode | qrpay.SignedWalletCode):
        out["fields"] = code.summary()
    elif isinstance(code, qrpay.OtherCode):
        out["message"] = mask_card_numbers(code.description)
    return out


@_usage_errors
def cmd_scan(args: argparse.Namespace) -> int:
    from terminal.errors import ReaderError

    if args.pay and not args.amount:
        raise UsageError("--pay needs --amount")
    if args.amount and not args.pay:
        raise UsageError("--amount is only used with --pay")
    with open_service(args) as svc:
        amount = _amount(svc, args.amount) if args.pay else None
        try:
            scanner = svc.open_scanner(args.source)
        except ReaderError as exc:
            print(f"walletpos: {exc.title}: {exc.message}", file=sys.stderr)
            return Exit.READ_ERROR
        read = 0
        try:
            with scanner:
                for code in scanner.codes(max_frames=args.max_frames, timeout=args.timeout):
                    read += 1
                    line = {"source": code.source, **_describe(svc, code.text), "format": code.symbology,
                            "decode_ms": round(code.decode_ms, 2)}
                    paid = None
                    if amount is not None and line["kind"] != "other" and line["kind"] != "mpm":
                        paid = svc.pay_code(code.text, amount)
                        line["payment"] = paid.to_dict()
                    _print_line(line, args.json)
                    if paid is not None and paid.outcome != "refused":
                        if "storage_failure" in paid.reasons:  # not approved: the journal cannot record
                            return Exit.STORAGE
                        return {"approved": Exit.OK, "declined": Exit.DECLINED,
                                "need_cvm": Exit.NEED_CVM}.get(paid.outcome, Exit.DECLINED)
        except ReaderError as exc:
            print(f"walletpos: {exc.title}: {exc.message}", file=sys.stderr)
            return Exit.READ_ERROR
        frames = scanner.frames_read
        status = scanner.status()
    if frames == 0 and status.state == "absent":  # a camera or stream that never opened: unavailable
        why = (status.detail or status.name).split("; retrying")[0]
        print(f"walletpos: camera unavailable: {why}", file=sys.stderr)
        return Exit.READER_UNAVAILABLE
    if not args.json:
        print(f"{read} code(s) read from {frames} frame(s)", file=sys.stderr)
    if amount is not None:
        print("walletpos: no payment code was read", file=sys.stderr)
        return Exit.READ_ERROR
    return Exit.OK if read else Exit.READ_ERROR


def _print_line(line: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(line, ensure_ascii=False), flush=True)
        return
    text = f"{line['source']}: {line['kind']}"
    if not line["valid"]:
        text += f" REFUSED ({line['problem']}: {line['message']})"
    elif line.get("message"):
        text += f" ({line['message']})"
    text += f"  {line['text']}  [{line['decode_ms']} ms]"
    payment = line.get("payment")
    if payment:
        text += f"\n  payment: {payment['outcome']} ({', '.join(payment['reasons'])}) {payment['message']}"
    print(text, flush=True)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("qr", parents=[common], help="show a dynamic merchant code for the customer to scan")
    p.add_argument("--amount", required=True, help="amount in the terminal currency, e.g. 12.34")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--png", metavar="FILE", help="also write the code as a PNG image")
    p.set_defaults(handler=cmd_qr)

    s = sub.add_parser("scan", parents=[common], help="read payment codes from a camera, video, image or folder")
    s.add_argument("--source", help="device index (0), video file, image, folder of images, rtsp:// URL or sim: "
                                    "(default: [camera] source)")
    s.add_argument("--json", action="store_true", help="one JSON object per code read")
    s.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    s.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    s.add_argument("--pay", action="store_true", help="pay with the first payment code read (needs --amount)")
    s.add_argument("--amount", help="amount to pay with --pay, in the terminal currency")
    s.set_defaults(handler=cmd_scan)
