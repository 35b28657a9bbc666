"""`walletpos tui`: the cashier's screen on the configured reader, camera and backend."""

from __future__ import annotations

import argparse
from typing import Any

from terminal.commands.common import Exit, open_service


def cmd_tui(args: argparse.Namespace) -> int:
    from terminal.bootstrap import Devices
    from terminal.config import load_config
    from terminal.tui.app import make_app

    config = load_config(getattr(args, "config", None))
    # the configured reader and camera, watched in their own threads, opened once the first screen is up
    with open_service(args, config=config, devices=Devices.configured(config, held=True)) as svc:
        # store-and-forward in the background, started once the first screen is up; the screen never waits for it
        make_app(svc, locale=args.locale, start_sync=svc.sync_enabled()).run()
    return Exit.OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("tui", parents=[common], help="the cashier's screen (Textual)")
    p.add_argument("--locale", choices=["en", "zh-CN"], help="language (default: [display] locale)")
    p.set_defaults(handler=cmd_tui)
