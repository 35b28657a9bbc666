"""`walletpos tui`: the cashier's screen on the configured reader, camera and backend."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_tui(args: argparse.Namespace) -> int:
    from terminal.checkout import attach_devices
    from terminal.cli import Exit, _service
    from terminal.tui.app import make_app

    with _service(args) as svc:
        attach_devices(svc)  # the configured reader and camera, watched in their own threads
        if svc.sync is not None:
            svc.start_sync()  # store-and-forward in the background; the screen never waits for it
        make_app(svc, locale=args.locale).run()
    return Exit.OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("tui", parents=[common], help="the cashier's screen (Textual)")
    p.add_argument("--locale", choices=["en", "zh-CN"], help="language (default: [display] locale)")
    p.set_defaults(handler=cmd_tui)
