"""What every `walletpos` subcommand shares: exit codes, the usage error, building the service,
JSON output and time arguments. A leaf below `terminal.cli` and the command modules."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, date, datetime, timedelta
from enum import IntEnum
from typing import Any

from terminal.errors import StorageError, WalletposError


class Exit(IntEnum):
    OK = 0
    USAGE = 2
    CONFIG = 3
    STORAGE = 4
    INTEGRITY = 5
    DECLINED = 10
    ONLINE_FAILED = 11
    NEED_CVM = 12
    READ_ERROR = 13
    NO_CARD = 14
    READER_UNAVAILABLE = 15
    NEEDS_A_PERSON = 16  # sync ran, but the backend rejected rows or the journal is on hold
    INTERNAL = 70


class UsageError(WalletposError):
    title = "Usage error"


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def open_service(args: argparse.Namespace, **parts: Any) -> Any:  # -> terminal.service.Service
    """The terminal for one command, from --config and --data-dir (`terminal.bootstrap`; imported
    here, not at the top, so that `walletpos --help` stays fast)."""
    from terminal.bootstrap import bootstrap

    return bootstrap(config_path=getattr(args, "config", None), data_dir=getattr(args, "data_dir", None),
                     configure_logging=True, **parts)


def require_storage(svc: Any) -> None:
    """A command that records needs the journal: when it could not be opened (a full disk, a data
    directory others may write to, ...) the command ends with the storage error (exit 4) saying why,
    instead of a misleading answer further on ("the backend is switched off")."""
    if svc.storage_problem:
        raise StorageError(svc.storage_problem, title="Cannot record")


def parse_since(text: str, zone: Any) -> datetime:
    """'24h', '7d', '30m', '2026-11-20', '2026-11-20T08:00' (local), or with Z/offset."""
    m = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", text)
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(m.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            day = date.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(
                f"--since {text!r}: give a time like 2026-11-20, 2026-11-20T08:00, or an age like 24h or 7d"
            ) from None
        moment = datetime(day.year, day.month, day.day)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def read_pins(args: argparse.Namespace, prompts: list[str]) -> list[str]:
    """PINs for a command: asked on the terminal, or one per line on standard input with --pin-stdin
    (scripts). Never an argument (it would land in shell history and `ps`). No terminal and no
    --pin-stdin is a usage error, not a crash."""
    import getpass
    import sys

    if getattr(args, "pin_stdin", False):
        lines = sys.stdin.read().splitlines()
        if len(lines) < len(prompts):
            raise UsageError(f"--pin-stdin: expected {len(prompts)} line(s) on standard input")
        return [line.strip() for line in lines[: len(prompts)]]
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask the PIN on: give it on standard input with --pin-stdin")
    try:
        return [getpass.getpass(p) for p in prompts]
    except EOFError:
        raise UsageError("no PIN was given (standard input ended)") from None

