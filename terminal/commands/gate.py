"""`walletpos gate`: a transit gate, headless, for months: reader and camera armed at all times, every
tap decided offline and journaled as a fare row, the gate hardware driven, the journal synced in the
background, the passenger display on the terminal (or `--headless`: one log line per tap).
`walletpos gate --status` is the technician's view of a running gate (from another shell).

Started by systemd (config/walletpos-gate.service); SIGTERM stops it cleanly. A reader, camera or
gate board that goes away is opened again with backoff; the process itself is restarted by systemd
if it ever ends."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from terminal.commands.common import Exit, UsageError, print_json


def _open(args: argparse.Namespace, *, devices: bool) -> Any:
    from terminal.bootstrap import GateDevices, bootstrap
    from terminal.config import load_config
    from terminal.errors import ConfigError

    config = load_config(getattr(args, "config", None))
    if devices and config.terminal.mode != "transit":
        raise ConfigError(f"{config.source}: [terminal] mode is \"{config.terminal.mode}\"; a gate needs "
                          "mode = \"transit\" (see config/transit.toml)")
    place = None
    if args.station or args.direction or args.gate_id:
        from terminal.transit import GatePlace

        t = config.transit
        place = GatePlace(args.gate_id or t.gate_id, args.station or t.station, args.direction or t.direction)
    return bootstrap(config, getattr(args, "data_dir", None), configure_logging=True,
                     gate=GateDevices.configured(config) if devices else None, gate_place=place)


def status_lines(status: dict[str, Any]) -> list[str]:
    gate = status.get("gate") or {}
    lines = [f"gate      {gate.get('id')} at {gate.get('station')} ({gate.get('direction')}), fare table "
             f"{gate.get('fare_table') or '-'}"]
    if not status.get("running_here") and not status.get("status_file"):
        lines.append("          no running gate has written its status here (is `walletpos gate` running?)")
    elif not status.get("running_here"):
        lines.append(f"          status written {status.get('status_written_at')} by pid {status.get('pid')}, "
                     f"up {status.get('uptime_s')} s")
    for kind, dev in (status.get("devices") or {}).items():
        detail = f" - {dev.get('detail')}" if dev.get("detail") else ""
        lines.append(f"{kind:<9} {dev.get('state')} {dev.get('name') or ''}{detail}")
    decision = status.get("decision_ms") or {}
    lines.append(f"taps      {status.get('taps_per_minute')} per minute (fare rows in the journal in the last minute: "
                 f"{status.get('fare_rows_last_minute')}); {status.get('outcomes') or {}}")
    lines.append(f"decision  p50 {decision.get('p50')} ms, p99 {decision.get('p99')} ms over "
                 f"{decision.get('samples')} taps (tap to gate command, journaling included)")
    deny = status.get("deny_list") or {}
    lines.append(f"deny list version {deny.get('version')}, {deny.get('entries')} entries, "
                 f"{deny.get('memory_bytes')} bytes in memory")
    queue = status.get("queue") or {}
    lines.append(f"queue     {queue.get('pending')} rows to upload (oldest {queue.get('oldest_pending_at')}); "
                 f"last sync {status.get('last_sync_at')}")
    integrity = status.get("integrity") or {}
    if integrity and not integrity.get("ok"):
        lines.append(f"HOLD      {integrity.get('problem')}")
    return lines


def cmd_gate(args: argparse.Namespace) -> int:
    if args.status:
        with _open(args, devices=False) as service:
            status = service.gate_status()
        if args.json:
            print_json(status)
        else:
            print("\n".join(status_lines(status)))
        return Exit.OK
    if args.json:
        raise UsageError("--json goes with --status")
    service = _open(args, devices=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        table = service.fare_table  # read and checked before the gate opens
        if service.sync_enabled():
            service.start_sync()
        lane = service.start_gate()
        if args.headless:
            service.on_gate_event(lambda event: print(json.dumps({
                "at": event.at.isoformat(), "via": event.via, "decision_ms": round(event.decision_ms, 3),
                **{k: v for k, v in event.result.to_dict().items() if k != "breakdown"}}, default=str), flush=True))
            print(f"walletpos gate {lane.place.gate_id} at {lane.place.station} ({lane.place.direction}), fare table "
                  f"{table.label}: running", file=sys.stderr, flush=True)
            try:
                while not stop.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass
        else:
            from terminal.gate.display import PassengerDisplay

            app = PassengerDisplay(service, locale=args.locale or service.config.display.locale,
                                   place=lane.place, station_name=lambda sid: table.stations[sid].name
                                   if sid in table.stations else sid)
            threading.Thread(target=lambda: (stop.wait(), app.call_from_thread(app.exit)), daemon=True).start()
            app.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.close()
    return Exit.OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("gate", parents=[common],
                       help="run a transit gate: every tap decided offline, journaled as a fare row, the gate driven")
    p.add_argument("--status", action="store_true", help="the technician's view of this terminal's gate")
    p.add_argument("--json", action="store_true", help="with --status: as JSON")
    p.add_argument("--headless", action="store_true", help="no passenger display: one JSON line per tap on stdout")
    p.add_argument("--locale", choices=["en", "zh-CN"], help="passenger display language (default: [display] locale)")
    p.add_argument("--station", help="station id (default: [transit] station)")
    p.add_argument("--direction", choices=["entry", "exit", "both"], help="default: [transit] direction")
    p.add_argument("--gate-id", help="default: [transit] gate_id")
    p.set_defaults(handler=cmd_gate)
