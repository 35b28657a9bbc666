"""`walletpos demo`: the product on its embedded defaults with the sandbox backend, the simulated
reader and camera, and demo operators (the README's run command)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from terminal.commands.common import Exit


def demo_data_dir(data_dir: str | None, env: Mapping[str, str]) -> Path:
    """The demo's data directory: the one every other command uses when --data-dir or
    $WALLETPOS_DATA_DIR names one (so `walletpos status` after the demo sees its journal), else
    `demo/` in the platform's user data directory (so the demo never mixes with a real terminal's
    own data in the default directory)."""
    from terminal.bootstrap import resolve_data_dir

    if data_dir or env.get("WALLETPOS_DATA_DIR"):
        return resolve_data_dir(data_dir, env)
    return resolve_data_dir(None, {}) / "demo"


def cmd_demo(args: argparse.Namespace) -> int:
    from terminal.config import load_config
    from terminal.demo import Demo
    from terminal.tui.app import make_app

    if args.transit:
        return transit_demo(args)
    data_dir = demo_data_dir(getattr(args, "data_dir", None), os.environ)
    demo = Demo(data_dir, load_config(getattr(args, "config", None)))
    try:
        service = demo.start()
        make_app(service, locale=args.locale, demo=demo).run()
    finally:
        demo.close()
    return Exit.OK


def transit_demo(args: argparse.Namespace) -> int:
    """`walletpos demo --transit`: four gates at two stations and the passenger display."""
    from terminal.bootstrap import resolve_data_dir
    from terminal.config import load_config
    from terminal.demo import TransitDemo
    from terminal.gate.display import PassengerDisplay

    data_dir = Path(args.data_dir) if getattr(args, "data_dir", None) else resolve_data_dir(None) / "demo-transit"
    config = load_config(getattr(args, "config", None))
    locale = args.locale or config.display.locale
    demo = TransitDemo(data_dir, config, locale)
    try:
        service = demo.start()
        table = service.fare_table
        app = PassengerDisplay(service, locale=locale, place=demo.places[0], controls=demo, subscribe=False,
                               station_name=lambda sid: table.stations[sid].name if sid in table.stations else sid)
        demo.display = app
        app.run()
    finally:
        demo.close()
    return Exit.OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common],
                       help="the whole product without hardware: sandbox backend, simulated reader and camera")
    p.add_argument("--locale", choices=["en", "zh-CN"], help="language (default: [display] locale)")
    p.add_argument("--transit", action="store_true",
                   help="transit gates instead: entry and exit gates at two stations, the passenger display, "
                        "virtual cards on keys")
    p.set_defaults(handler=cmd_demo)
