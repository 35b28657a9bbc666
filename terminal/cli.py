"""`walletpos` command line. Every subcommand that reports takes --json.

Exit codes: 0 success (payment approved), 2 usage error, 3 config error, 4 storage error,
5 journal integrity failure, 10 payment declined, 11 online authorisation needed but failed,
12 customer verification (PIN/CDCVM) needed, 13 card or code could not be read, 14 no card presented
in time, 15 card reader unavailable, 70 internal error. `walletpos doctor`: 0 healthy, 20 warnings,
21 a check failed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from terminal import __version__
from terminal.commands.common import Exit, UsageError
from terminal.errors import ConfigError, JournalIntegrityError, SecurityError, StorageError, WalletposError

log = logging.getLogger("walletpos.cli")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: $WALLETPOS_CONFIG, else the embedded defaults)")
    common.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="journal, keys and logs (default: $WALLETPOS_DATA_DIR, else the user data dir)")
    return common


# ------------------------------------------------------------------------------------------------
# parser

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="walletpos",
        description="Point-of-sale terminal for a bank's digital wallet: cards, QR codes, offline approval.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"walletpos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


# Subcommands that live in their own modules (tap, scan, qr, sync, demo, ...). Each module has
# `register(subparsers, common_parent)` and imports heavy dependencies only inside its handlers,
# so `walletpos --help` stays fast.
COMMAND_MODULES: tuple[str, ...] = (
    "terminal.commands.inspect",
    "terminal.commands.backoffice",
    "terminal.commands.demo",
    "terminal.commands.gate",
    "terminal.commands.qr",
    "terminal.commands.sync",
    "terminal.commands.tap",
    "terminal.commands.tui",
    "terminal.commands.doctor",
)


def _fail(code: Exit, title: str, message: str) -> NoReturn:
    print(f"walletpos: {title}: {message}", file=sys.stderr)
    raise SystemExit(int(code))


# options whose value is an opaque secret that may start with "-" (a URL-safe token does, one time
# in 64): argparse would take `--token -Ab3...` for a missing value and an unknown option
_OPAQUE_VALUES = ("--token",)


def _join_opaque_values(argv: Sequence[str]) -> list[str]:
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
    parser = build_parser()
    argv = _join_opaque_values(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        # a group without its action (e.g. `walletpos journal`): show that group's help
        parser.parse_args([*argv, "--help"])
        return Exit.USAGE
    try:
        return int(handler(args))
    except ConfigError as exc:
        print(f"walletpos: {exc.message}", file=sys.stderr)
        raise SystemExit(int(Exit.CONFIG)) from None
    except (StorageError, SecurityError) as exc:  # SecurityError: keys or data directory not safe to use
        _fail(Exit.STORAGE, exc.title, exc.message)
    except JournalIntegrityError as exc:
        _fail(Exit.INTEGRITY, exc.title, exc.message)
    except UsageError as exc:
        _fail(Exit.USAGE, exc.title, exc.message)
    except WalletposError as exc:
        _fail(Exit.INTERNAL, exc.title, exc.message)
    except KeyboardInterrupt:
        _fail(Exit.INTERNAL, "interrupted", "stopped by the operator")
    except BrokenPipeError:
        return Exit.OK
    except Exception as exc:  # a bug: one clear line for the operator, the traceback in the log
        log.exception("internal error in %s", getattr(args, "command", "?"))
        _fail(Exit.INTERNAL, "internal error", f"{type(exc).__name__}: {exc} (details in the log file)")


if __name__ == "__main__":
    raise SystemExit(main())
