"""`walletpos status`, `rules explain`, `journal verify|export` and `config defaults|check`."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from datetime import date
from typing import Any

from terminal import messages
from terminal.commands.common import Exit, UsageError, open_service, parse_since, print_json, read_pins
from terminal.config import defaults_toml, load_config
from terminal.core.money import format_money, parse_amount
from terminal.core.rules import Method, PaymentRequest, WalletTier
from terminal.errors import MoneyError, StorageError


def cmd_status(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        status = svc.status()
    if args.json:
        print_json(status)
        return Exit.OK if status["storage"]["ok"] else Exit.STORAGE
    print(f"walletpos {status['version']}  terminal {status['terminal_id']} ({status['mode']})")
    print(f"config      {status['config_file']}")
    print(f"data dir    {status['data_dir']}")
    for line in device_lines(status):
        print(line)
    if not status["storage"]["ok"]:
        print(f"STORAGE     FAILED: {status['storage']['problem']}")
        print("approvals   DISABLED until the journal can record again")
        return Exit.STORAGE
    j = status["journal"]
    print(f"journal     {j['path']}")
    print(f"            {j['total']} transactions: {j['approved']} approved, {j['declined']} declined; "
          f"{j['pending_sync']} waiting to sync, {j['declined_after_offline']} declined after offline")
    exposure = status["unsynced_exposure"]
    print(f"exposure    {exposure['text']} approved offline and not yet accepted by the backend")
    print(f"last sync   {status['last_sync_at'] or 'never'}")
    print(f"deny list   version {status['deny_list']['version']}, {status['deny_list']['entries']} entries")
    print(f"approvals   {status['approvals']}")
    return Exit.OK


def device_lines(status: dict[str, Any]) -> list[str]:
    """Reader, camera and backend as `status` names them."""
    lines = []
    for kind in ("reader", "camera"):
        dev = status["devices"][kind]
        state = dev["state"] if dev["state"] != "not attached" else "not watched by this command (walletpos doctor " \
                                                                     "checks it)"
        name = f", {dev['name']}" if dev["name"] else ""
        detail = f" - {dev['detail']}" if dev["detail"] else ""
        lines.append(f"{kind:<11} {dev['configured']}{name}  {state}{detail}")
    backend = status["backend"]
    if not backend["enabled"]:
        lines.append("backend     switched off ([backend] enabled = false): offline-only terminal")
    else:
        state = "enrolled" if backend["enrolled"] else f"NOT ENROLLED ({backend['problem']})"
        last = f", last sync {backend.get('last_success_at') or 'never'}" if backend["enrolled"] else ""
        error = f", last error: {backend['last_error']}" if backend.get("last_error") else ""
        lines.append(f"backend     {backend['url']}  {state}{last}{error}")
    return lines


def cmd_rules_explain(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        cfg = svc.config
        try:
            amount = parse_amount(args.amount, svc.currency, decimal_sep=cfg.display.decimal_separator,
                                  group_sep=cfg.display.group_separator)
        except MoneyError as exc:
            raise UsageError(f"--amount: {exc}") from None
        if args.currency and args.currency.upper() != svc.currency.alpha:
            from terminal.core.money import Money, currency

            try:
                other = currency(args.currency)
            except MoneyError as exc:
                raise UsageError(f"--currency: {exc}") from None
            amount = Money(amount.minor, other)
        expiry = None
        if args.expiry:
            try:
                expiry = date.fromisoformat(args.expiry)
            except ValueError:
                raise UsageError(f"--expiry {args.expiry!r}: give the card's last valid day as YYYY-MM-DD") from None
        request = PaymentRequest(
            amount=amount, method=Method(args.method), card_token=args.card_token, expiry=expiry,
            wallet_tier=WalletTier(args.wallet_tier) if args.wallet_tier else None, cvm_performed=args.cvm,
        )
        outcome, state = svc.explain(request)
        rs = svc.rule_set
        synced_at = svc.status().get("last_sync_at")

    def money(m: Any) -> str:
        return format_money(m, decimal_sep=cfg.display.decimal_separator, group_sep=cfg.display.group_separator)

    state_dict = {
        "business_date": state.business_date.isoformat(),
        "card_offline_amount_today": state.card_offline_amount_today.minor,
        "card_offline_count_today": state.card_offline_count_today,
        "card_amount_today": state.card_amount_today.minor,
        "unsynced_exposure": state.unsynced_exposure.minor,
        "last_sync_at": synced_at,
        "sync_age_counted_from": state.last_sync_at.isoformat(),
        "deny_listed": state.deny_listed,
        "backend_reachable": state.backend_reachable,
    }
    if args.json:
        print_json({
            "request": {"amount": amount.minor, "currency": amount.currency.alpha, "method": request.method.value,
                        "card_token": request.card_token, "wallet_tier": args.wallet_tier,
                        "cvm_performed": request.cvm_performed, "expiry": args.expiry},
            **messages.outcome_dict(outcome),
            "state": state_dict,
        })
        return Exit.OK
    print(f"{outcome.decision.value}: {messages.outcome_message(outcome)}")
    print(f"reasons: {', '.join(r.value for r in outcome.reasons)}")
    if outcome.fallback is not None:
        print(f"if the backend does not answer: {outcome.fallback.value} "
              f"({', '.join(r.value for r in outcome.fallback_reasons)})")
    print(f"payment: {money(amount)} by {request.method.value}"
          + (f", card token {request.card_token}" if request.card_token else ""))
    print(f"state:   this payer today {money(state.card_offline_amount_today)} offline in "
          f"{state.card_offline_count_today} payments, {money(state.card_amount_today)} in all; "
          f"unsynced exposure {money(state.unsynced_exposure)}; "
          f"last sync {synced_at or f'never (installed {state.last_sync_at:%Y-%m-%d %H:%M} UTC)'}; "
          f"backend {'reachable' if state.backend_reachable else 'not reachable'}; "
          f"deny list {'HIT' if state.deny_listed else 'no'}")
    print(f"limits:  floor {money(rs.floor_limit)}, CVM {money(rs.cvm_required_limit)}, contactless "
          f"{money(rs.contactless_transaction_limit)}, offline cap {money(rs.offline_max_payment)}, "
          f"per card per day {money(rs.card_daily_amount)} / {rs.card_daily_count} payments, exposure cap "
          f"{money(rs.exposure_cap)}, sync age {int(rs.max_sync_age.total_seconds() // 3600)} h")
    return Exit.OK


def cmd_journal_verify(args: argparse.Namespace) -> int:
    from terminal.bootstrap import resolve_data_dir, verify_data_dir

    config = load_config(getattr(args, "config", None))
    last = [0.0]

    def progress(checked: int, total: int) -> None:  # a line every tenth of the way, on stderr
        if total and checked / total >= last[0] + 0.1:
            last[0] = checked / total
            print(f"verify: {checked} of {total} rows checked", file=sys.stderr, flush=True)

    report, journal_path = verify_data_dir(config, resolve_data_dir(getattr(args, "data_dir", None)),
                                           signatures=args.signatures, progress=progress if args.progress else None)
    path = str(journal_path)
    if args.json:
        print_json({"journal": path, **report.to_dict()})
    elif report.ok:
        print(f"journal OK: {report.rows_checked} transactions and {report.audit_rows_checked} audit rows "
              f"verified ({path})")
        for hold in report.checks.get("resolved_holds", []):
            print(f"  on record: hold resolved by {hold['actor']} at {hold['at']} ({hold['note']}): {hold['hold']}")
    else:
        print(f"journal FAILED: {report.problem}", file=sys.stderr)
        for problem in report.problems[1:]:
            print(f"  also: {problem}", file=sys.stderr)
    return Exit.OK if report.ok else Exit.INTEGRITY


def _technician(svc: Any, args: argparse.Namespace) -> str:
    """The technician's id, once their PIN checked (refused: a usage error naming why)."""
    (pin,) = read_pins(args, [f"Technician {args.technician} PIN: "])
    check = svc.operators.check(args.technician, pin, now=svc.clock(), purpose="journal_resolve",
                                require_role="technician")
    if not check.ok:
        raise UsageError(f"technician {args.technician}: {check.reason.replace('_', ' ')}")
    return str(args.technician)


def cmd_journal_resolve(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        actor = _technician(svc, args)
        was = svc.resolve_integrity_hold(actor=actor, note=args.note)
    if was is None:
        print("the journal was not on hold: nothing to resolve")
    else:
        print(f"integrity hold resolved by {actor} (audited): {was}")
        print("offline approvals are on again; journal verify lists this resolution from the signed audit")
    return Exit.OK


def cmd_journal_resolve_rejected(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        actor = _technician(svc, args)
        count = svc.resolve_rejected(args.seqs, actor=actor, note=args.note)
    print(f"{count} rejected row(s) written off by {actor} (audited)")
    return Exit.OK if count else Exit.USAGE


def cmd_journal_export(args: argparse.Namespace) -> int:
    with open_service(args) as svc:
        since = parse_since(args.since, svc.config.terminal.zone) if args.since else None
        to_file = bool(args.output and args.output != "-")
        count = 0
        try:
            target = os.fdopen(os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w",
                               encoding="utf-8") if to_file else contextlib.nullcontext(sys.stdout)
            with target as out:
                for row in svc.export_journal(since):  # streamed: memory stays flat at any journal size
                    out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
                    count += 1
        except OSError as exc:
            raise StorageError(f"cannot write {args.output}: {exc.strerror}") from None
    if to_file:
        print(f"{count} transactions written to {args.output}", file=sys.stderr)
    return Exit.OK


def cmd_journal_archive(args: argparse.Namespace) -> int:
    if args.keep_days is not None and not 8 <= args.keep_days <= 3650:
        raise UsageError("--keep-days must be 8 to 3650 (the refund window needs a week of sales)")
    with open_service(args) as svc:
        result = svc.archive_journal(keep_days=args.keep_days)
    if args.json:
        print_json(result.to_dict())
    else:
        print(f"{result.archived} rows archived (the journal now starts after row {result.through_seq}; days "
              f"before {result.cutoff} may leave)" + (f"; stopped: {result.stopped_by}" if result.stopped_by else ""))
    return Exit.OK


def cmd_config_defaults(args: argparse.Namespace) -> int:
    sys.stdout.write(defaults_toml())
    return Exit.OK


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = load_config(getattr(args, "config", None))
    if args.json:
        print_json({"ok": True, "config_file": cfg.source})
    else:
        print(f"config OK: {cfg.source}")
    return Exit.OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[common], help="terminal, journal, queue and storage state")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("rules", parents=[common], help="the offline approval rules")
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION")
    e = rsub.add_parser("explain", parents=[common], help="decide a payment against the live journal state")
    e.add_argument("--amount", required=True, help="amount in the terminal currency, e.g. 250.00")
    e.add_argument("--method", required=True, choices=[m.value for m in Method])
    e.add_argument("--card-token", help="card or wallet token (velocity and deny list)")
    e.add_argument("--wallet-tier", choices=[t.value for t in WalletTier])
    e.add_argument("--expiry", help="card expiry as YYYY-MM-DD (last valid day)")
    e.add_argument("--currency", help="currency of the payment (default: the terminal's)")
    e.add_argument("--cvm", action="store_true", help="the customer's PIN or device verification was done")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(handler=cmd_rules_explain)

    p = sub.add_parser("journal", parents=[common], help="the transaction journal")
    jsub = p.add_subparsers(dest="journal_command", metavar="ACTION")
    v = jsub.add_parser("verify", parents=[common],
                        help="check the journal (read-only): structure, chains, state, checkpoints, anchor")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.add_argument("--signatures", action="store_true", help="also check every row's Ed25519 signature (slower)")
    v.add_argument("--progress", action="store_true", help="say on stderr how far the check has got")
    v.set_defaults(handler=cmd_journal_verify)
    r = jsub.add_parser("resolve", parents=[common],
                        help="a technician turns offline approvals back on after checking an integrity hold")
    r.add_argument("--technician", required=True, metavar="ID", help="the technician's operator id (PIN asked)")
    r.add_argument("--note", required=True, help="what was checked and why approvals may go on (audited)")
    r.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input")
    r.set_defaults(handler=cmd_journal_resolve)
    w = jsub.add_parser("resolve-rejected", parents=[common],
                        help="a technician writes off rows the backend rejected (they stop counting as exposure)")
    w.add_argument("seqs", nargs="+", type=int, metavar="SEQ", help="sequence numbers of rejected rows")
    w.add_argument("--technician", required=True, metavar="ID", help="the technician's operator id (PIN asked)")
    w.add_argument("--note", required=True, help="the support case or reason (audited)")
    w.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input")
    w.set_defaults(handler=cmd_journal_resolve_rejected)
    a = jsub.add_parser("archive", parents=[common],
                        help="retention now: rows the backend holds, older than keep_days, leave the device")
    a.add_argument("--keep-days", type=int, help="business days to keep (default: [journal] keep_days, at least 8)")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(handler=cmd_journal_archive)
    x = jsub.add_parser("export", parents=[common], help="write transactions as JSON lines")
    x.add_argument("--since", help="from this time: 2026-11-20, 2026-11-20T08:00 (local), 24h, 7d")
    x.add_argument("--output", "-o", help="file to write (default: standard output)")
    x.set_defaults(handler=cmd_journal_export)

    p = sub.add_parser("config", parents=[common], help="configuration files")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    d = csub.add_parser("defaults", parents=[common], help="print every key with its default and comment")
    d.set_defaults(handler=cmd_config_defaults)
    c = csub.add_parser("check", parents=[common], help="validate the config file")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(handler=cmd_config_check)
