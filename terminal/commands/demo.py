"""`walletpos demo`: the product on its embedded defaults with the sandbox backend, the simulated
reader and camera, and demo operators (the README's run command)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from terminal.commands.common import Exit


def cmd_demo(args: argparse.Namespace) -> int:
    from terminal.bootstrap import resolve_data_dir
    from terminal.config import load_config
    from terminal.demo import Demo
    from terminal.tui.app import make_app

    data_dir = Path(args.data_dir) if getattr(args, "data_dir", None) else resolve_data_dir(None) / "demo"
    demo = Demo(data_dir, load_config(getattr(args, "config", None)))
    try:
        service = demo.start()
        make_app(service, locale=args.locale, demo=demo).run()
    finally:
        demo.close()
    return Exit.OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common],
                       help="the whole product without hardware: sandbox backend, simulated reader and camera")
    p.add_argument("--locale", choices=["en", "zh-CN"], help="language (default: [display] locale)")
    p.set_defaults(handler=cmd_demo)
