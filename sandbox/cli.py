"""`walletpos-sandbox`: serve the sandbox wallet backend, or steer a running one through its admin API.

    walletpos-sandbox serve [--port 8765] [--data-dir DIR]      # http://127.0.0.1:8765
    walletpos-sandbox admin enrolment-token [--terminal-id WPOS0001]
    walletpos-sandbox admin deny TOKEN [--reason lost_card]
    walletpos-sandbox admin out-of-funds TOKEN [--undo]
    walletpos-sandbox admin card-pin TOKEN PIN
    walletpos-sandbox admin paid REFERENCE [--amount 1250 --currency CNY]
    walletpos-sandbox admin limits --currency CNY --floor-limit 5000 ...
    walletpos-sandbox admin issuer-key [--key-id K1]
    walletpos-sandbox admin issuer-sign K1 --payload-hex 0102...
    walletpos-sandbox admin faults --rate 0.3 [--kinds error,reset,timeout,malformed,retry_after]
    walletpos-sandbox admin faults --off
    walletpos-sandbox admin stats [--terminal-id WPOS0001]

The admin token is written to <data dir>/admin.token (mode 0600) by `serve`, and read from there
(or from --token / $WALLETPOS_SANDBOX_ADMIN_TOKEN) by `admin`. `python -m sandbox` is the same command.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import requests

from .server import AdminClient, SandboxServer

DEFAULT_DIR = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "walletpos-sandbox"
TOKEN_ENV = "WALLETPOS_SANDBOX_ADMIN_TOKEN"
LIMITS = ("floor_limit", "cvm_required_limit", "contactless_transaction_limit", "offline_max_payment",
          "card_daily_amount", "card_daily_count", "exposure_cap", "max_hours_since_sync")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file left by an older run may be readable by others
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def serve(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    db = Path(args.db) if args.db else data_dir / "backend.sqlite3"
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = args.admin_token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    _write_private(db.parent / "admin.token", token)
    server = SandboxServer(db, args.host, args.port, token, args.cert, args.key)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if args.ready_json:
        print(json.dumps({"url": server.url, "pid": os.getpid(), "db": str(db)}), flush=True)
    else:
        print(f"sandbox wallet backend on {server.url} (data {db}; admin token in {db.parent / 'admin.token'})",
              flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.server_close()
        server.store.close()
    return 0


def admin(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        path = Path(args.data_dir) / "admin.token"
        try:
            token = path.read_text().strip()
        except OSError:
            print(f"no admin token: give --token, set {TOKEN_ENV}, or run serve with --data-dir {args.data_dir}",
                  file=sys.stderr)
            return 2
    client = AdminClient(args.url, token, verify=args.ca_file or True)
    action = args.action
    if action == "enrolment-token":
        out: object = {"token": client.enrolment_token(args.terminal_id)}
    elif action == "deny":
        out = {"deny_list_version": client.deny(args.card_token, args.reason)}
    elif action == "allow":
        out = {"deny_list_version": client.allow(args.card_token)}
    elif action == "card-pin":
        client.card_pin(args.card_token, args.pin)
        out = {"card_token": args.card_token}
    elif action == "out-of-funds":
        client.out_of_funds(args.card_token, not args.undo)
        out = {"card_token": args.card_token, "out_of_funds": not args.undo}
    elif action == "paid":
        out = client.mark_paid(args.reference, args.amount, args.currency, args.card_token, args.terminal_id)
    elif action == "limits":
        out = client.set_limits(args.currency, **{name: getattr(args, name) for name in LIMITS})
    elif action == "issuer-key":
        out = client.new_issuer_key(args.key_id)
    elif action == "issuer-sign":
        signature = client.issuer_sign(args.key_id, bytes.fromhex(args.payload_hex))
        out = {"key_id": args.key_id, "signature_hex": signature.hex()}
    elif action == "faults":
        if args.off:
            out = client.faults_off()
        else:
            plan: dict[str, object] = {"rate": args.rate, "latency_ms": args.latency_ms, "timeout_ms": args.timeout_ms,
                                       "retry_after_s": args.retry_after_s}
            if args.kinds:
                plan["kinds"] = args.kinds.split(",")
            if args.seed is not None:
                plan["seed"] = args.seed
            out = client.faults(**plan)
    elif action == "fare-table":
        out = client.set_fare_table(Path(args.file).read_text(encoding="utf-8"))
    elif action == "transit-charges":
        out = client.transit_charges(args.date)
    elif action == "transit-card":
        out = client.transit_card(args.card_token, args.date)
    else:
        out = client.stats(args.terminal_id)
    print(json.dumps(out, indent=2))
    return 0


# options whose value is an opaque secret that may start with "-" (a URL-safe token does, one time in
# 64): argparse would take `--token -Ab3...` for a missing value followed by an unknown option
_OPAQUE_VALUES = ("--token", "--admin-token")


def _join_opaque_values(argv: Sequence[str]) -> list[str]:
    """`--token VALUE` -> `--token=VALUE`, so that a VALUE starting with "-" stays a value."""
    out: list[str] = []
    items = iter(argv)
    for arg in items:
        if arg in _OPAQUE_VALUES:
            value = next(items, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="walletpos-sandbox", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DIR), help=f"backend data (default {DEFAULT_DIR})")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the backend until stopped")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8765, help="0 for a free port")
    s.add_argument("--db", help="SQLite file (default <data dir>/backend.sqlite3)")
    s.add_argument("--cert", help="PEM certificate: serve HTTPS")
    s.add_argument("--key", help="PEM private key of --cert")
    s.add_argument("--admin-token", help=f"admin API token (default ${TOKEN_ENV}, else a new one)")
    s.add_argument("--ready-json", action="store_true", help="print one JSON line with the URL once listening")
    s.set_defaults(func=serve)

    a = sub.add_parser("admin", help="steer a running backend")
    a.add_argument("--url", default="http://127.0.0.1:8765")
    a.add_argument("--token", help=f"admin token (default ${TOKEN_ENV}, else <data dir>/admin.token)")
    a.add_argument("--ca-file", help="CA certificate of an HTTPS sandbox")
    act = a.add_subparsers(dest="action", required=True)
    p = act.add_parser("enrolment-token", help="a one-time token for `walletpos backend enrol`")
    p.add_argument("--terminal-id")
    p = act.add_parser("deny", help="put a card or wallet token on the deny list")
    p.add_argument("card_token")
    p.add_argument("--reason", default="blocked_by_issuer")
    p = act.add_parser("allow", help="take a token off the deny list")
    p.add_argument("card_token")
    p = act.add_parser("card-pin", help="set a card's test PIN (by token; the default is 1234)")
    p.add_argument("card_token")
    p.add_argument("pin")
    p = act.add_parser("out-of-funds", help="decline this token's offline payments after sync")
    p.add_argument("card_token")
    p.add_argument("--undo", action="store_true")
    p = act.add_parser("paid", help="the wallet app pays a registered merchant code")
    p.add_argument("reference")
    p.add_argument("--amount", type=int, help="minor units (default: what the code asks)")
    p.add_argument("--currency")
    p.add_argument("--card-token")
    p.add_argument("--terminal-id", help="the terminal label in the code (62/07)")
    p = act.add_parser("limits", help="set the terminal limits (minor units; omitted = none)")
    p.add_argument("--currency", default="CNY")
    for name in LIMITS:
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=int)
    p = act.add_parser("issuer-key", help="create an issuer key for signed wallet codes")
    p.add_argument("--key-id")
    p = act.add_parser("issuer-sign", help="sign bytes with an issuer key (mint a signed wallet code)")
    p.add_argument("key_id")
    p.add_argument("--payload-hex", required=True)
    p = act.add_parser("faults", help="inject faults into terminal requests")
    p.add_argument("--off", action="store_true")
    p.add_argument("--rate", type=float, default=0.3)
    p.add_argument("--kinds", help="comma-separated: error,reset,timeout,malformed,retry_after")
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--timeout-ms", type=int, default=2000)
    p.add_argument("--retry-after-s", type=int, default=1)
    p.add_argument("--seed", type=int)
    p = act.add_parser("fare-table", help="the network's fare table for the transit back office (TOML file)")
    p.add_argument("file")
    p = act.add_parser("transit-charges", help="every card's daily charge of a service day")
    p.add_argument("date", help="YYYY-MM-DD")
    p = act.add_parser("transit-card", help="a card's journeys and daily charge of a service day")
    p.add_argument("card_token")
    p.add_argument("date", help="YYYY-MM-DD")
    p = act.add_parser("stats", help="what the backend holds")
    p.add_argument("--terminal-id")
    a.set_defaults(func=admin)
    args = parser.parse_args(_join_opaque_values(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except (RuntimeError, requests.RequestException) as exc:  # the admin API refused, or no sandbox there
        print(f"walletpos-sandbox: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
