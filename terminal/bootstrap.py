"""The one place that wires walletpos: config, keys, journal, rules, backend client, sync worker,
reader and camera, built into a `Service` from config plus injectable parts.

The CLI, the TUI, `walletpos demo`, the benchmarks and the tests all call `bootstrap`; nothing sets
attributes on a service from outside. Injectable parts:

- `clock`: the time source (tests move it by hand);
- `authorizer`: online authorisation (default: the backend client's, when the backend is enabled);
- `devices`: what the checkout races for one sale. `None` (the default) builds no checkout (a CLI
  command that reads no card), `Devices.configured()` the reader and camera from config, or any
  openers (the demo's simulated reader, a test's virtual card reader).
- `gate`: a transit gate's reader, camera and gate hardware (`GateDevices`): builds the gate lane
  (`terminal.gate.lane.GateLane`) that `walletpos gate` runs; `gate_place` overrides the configured
  station, direction and gate id (the demo runs several gates on one terminal).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from drivers.base import CardReader, CodeScanner
from terminal.backend import BackendAuthorizer, BackendClient, Enrolment
from terminal.backoffice import BackOffice
from terminal.cardpay import CardPayments
from terminal.checkout import Checkout, PaymentInterpreter, seal_pin_block
from terminal.codepay import MerchantCodes
from terminal.config import Config, load_config
from terminal.errors import SecurityError, StorageError
from terminal.journal import Journal, VerifyReport
from terminal.journal.chain import verify_journal
from terminal.logs import setup_logging
from terminal.operators import Operators
from terminal.payment import Clock, OnlineAuthorizer, utc_now
from terminal.payments import Payments, Storage
from terminal.security import ensure_private_dir, load_keys, load_or_create_keys
from terminal.service import Service
from terminal.sync import SyncWorker

# A transit gate's code (fares, gate rules, the lane and its hardware) is loaded when a gate is built
# or a fare is first asked for: a cashier's terminal does not pay for it at start (~45 ms). The
# import-graph test counts these imports like any other.
if TYPE_CHECKING:
    from drivers.gate import GateHardware
    from terminal.gate.lane import GateLane
    from terminal.transit import GatePlace, TransitTaps

log = logging.getLogger("walletpos.bootstrap")

JOURNAL_FILE = "journal.sqlite3"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Path:
    """--data-dir, else $WALLETPOS_DATA_DIR, else the platform's user data directory."""
    env = os.environ if env is None else env
    if data_dir:
        return Path(data_dir).expanduser()
    if env.get("WALLETPOS_DATA_DIR"):
        return Path(env["WALLETPOS_DATA_DIR"]).expanduser()
    return Path(platformdirs.user_data_dir("walletpos", appauthor=False))


@dataclass(frozen=True)
class Devices:
    """How the checkout opens its card reader and its camera (either may be None: not attached).
    The watchers open them in their own threads, so a missing device only shows as absent. `held`:
    the devices are opened at `Service.start_devices()` rather than at once (the TUI opens them once
    its first screen is on the terminal, so that opening a camera does not slow the start)."""

    open_reader: Callable[[], CardReader] | None = None
    open_scanner: Callable[[], CodeScanner] | None = None
    held: bool = False

    @classmethod
    def configured(cls, config: Config, *, held: bool = False) -> Devices:
        """The reader (`[reader] device`) and the camera (`[camera] source`) from config."""

        def reader() -> CardReader:
            from drivers.readers import open_reader

            return open_reader(config.reader.device)

        def scanner() -> CodeScanner:
            from drivers.camera import scanner_from_config

            return scanner_from_config(config)

        return cls(reader, scanner, held)


@dataclass(frozen=True)
class GateDevices:
    """A transit gate's devices: card reader, camera and gate hardware (each may be None)."""

    open_reader: Callable[[], CardReader] | None = None
    open_scanner: Callable[[], CodeScanner] | None = None
    open_hardware: Callable[[], GateHardware] | None = None

    @classmethod
    def configured(cls, config: Config) -> GateDevices:
        """The reader, the camera and `[transit] gate_device` from config."""
        devices = Devices.configured(config)

        def hardware() -> GateHardware:
            from drivers.gates import open_gate

            return open_gate(config.transit.gate_device)

        return cls(devices.open_reader, devices.open_scanner, hardware)


def open_storage(config: Config, data_dir: Path, clock: Clock, *, configure_logging: bool = False) -> Storage:
    """The data directory (owner-only), logging, the terminal keys and the journal. A journal that
    cannot be opened is not an exception: the terminal starts with approvals disabled and says why."""
    keys = journal = None
    try:
        ensure_private_dir(data_dir)
        if configure_logging:
            setup_logging(data_dir / "logs", config.log.level, config.log.keep_files)
        path = data_dir / JOURNAL_FILE
        ran_before = load_keys(data_dir) is not None  # the keys are made with the journal, on first start
        missing = not path.exists() or path.stat().st_size == 0
        keys = load_or_create_keys(data_dir)
        journal = Journal(path, keys, config.terminal.id, now=clock())
        if ran_before and missing:
            journal.hold("the journal file was missing or empty while the terminal's keys were there: it was "
                         "deleted or lost", now=clock())
    except (StorageError, SecurityError) as exc:
        problem = exc.message
        if isinstance(exc, StorageError) and "disk is full" not in problem and disk_full(data_dir):
            # SQLite says "disk I/O error" when it cannot make the journal's shared-memory file on a full disk
            problem = f"the disk is full: {data_dir} has no space left; free space and start again ({problem})"
        log.error("storage unavailable, approvals disabled: %s", problem)
        return Storage(keys, None, problem)
    return Storage(keys, journal)


FULL_DISK_BYTES = 256 * 1024  # less free space than this where the journal lives: the disk is full


def disk_full(directory: Path) -> bool:
    """Is the file system holding `directory` (nearly) out of space for the journal?"""
    try:
        stat = os.statvfs(directory)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < FULL_DISK_BYTES


def bootstrap(
    config: Config | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    clock: Clock = utc_now,
    authorizer: OnlineAuthorizer | None = None,
    devices: Devices | None = None,
    gate: GateDevices | None = None,
    gate_place: GatePlace | None = None,
    configure_logging: bool = False,
) -> Service:
    """Build the whole terminal. `config` (else loaded from `config_path` / $WALLETPOS_CONFIG / the
    embedded defaults) and `data_dir` (else $WALLETPOS_DATA_DIR / the user data directory)."""
    config = config if config is not None else load_config(config_path, env)
    directory = resolve_data_dir(data_dir, env)
    storage = open_storage(config, directory, clock, configure_logging=configure_logging)
    journal = storage.journal

    client: BackendClient | None = None
    if config.backend.enabled and journal is not None and storage.keys is not None:
        client = BackendClient(config, directory, storage.keys)
        if authorizer is None:
            authorizer = BackendAuthorizer(client, config.backend.online_auth_deadline_ms)

    def sealing_key() -> bytes | None:
        enrolment = client.enrolment if client is not None else None
        return enrolment.sealing_public_key if enrolment is not None else None

    payments = Payments(config, directory, storage, clock=clock, online=authorizer, sealing_key=sealing_key)
    policy = config.operators
    operators = (Operators(journal, max_failed_pins=policy.max_failed_pins,
                           lockout=timedelta(minutes=policy.lockout_minutes)) if journal is not None else None)
    backoffice = BackOffice(payments, operators) if operators is not None else None
    cards = CardPayments(payments)
    merchant_codes = MerchantCodes(payments, client)

    sync: SyncWorker | None = None
    if client is not None and journal is not None:
        sync = SyncWorker(journal, client, sync_config=config.sync, clock=clock, rules=payments.rules,
                          housekeeping=payments.housekeeping,
                          settle_merchant_codes=lambda: len(merchant_codes.settle()),
                          authorizer=authorizer if isinstance(authorizer, BackendAuthorizer) else None)

    checkout: Checkout | None = None
    if devices is not None:
        checkout = Checkout(payments, PaymentInterpreter(cards), merchant_codes, open_reader=devices.open_reader,
                            open_scanner=devices.open_scanner, seal_pin=partial(seal_pin_block, payments),
                            start=not devices.held)

    transit = _transit_factory(payments, cards)
    lane: GateLane | None = None
    if gate is not None:
        from terminal.gate.lane import GateLane
        from terminal.transit import GatePlace

        place = gate_place or GatePlace.configured(config)
        lane = GateLane(transit, place, open_reader=gate.open_reader, open_scanner=gate.open_scanner,
                        open_hardware=gate.open_hardware, hold_ms=config.transit.open_ms,
                        reader_backoff_s=config.reader.reopen_backoff_max_ms / 1000,
                        camera_backoff_s=config.camera.reopen_backoff_max_ms / 1000,
                        upkeep=_gate_upkeep(payments, backoffice), clock=clock, status_dir=directory)

    return Service(payments=payments, operators=operators, backoffice=backoffice, cards=cards,
                   merchant_codes=merchant_codes, backend=client, sync=sync, checkout=checkout, transit=transit,
                   gate=lane)


def _transit_factory(payments: Payments, cards: CardPayments) -> Callable[[], TransitTaps]:
    """Taps at transit gates, built on first use (the fare table is read then: a terminal that is no
    gate never needs one)."""
    made: list[TransitTaps] = []

    def transit() -> TransitTaps:
        if not made:
            from terminal.transit import TransitTaps, gate_policy, load_fare_table


            config = payments.config
            made.append(TransitTaps(payments, cards, load_fare_table(config), gate_policy(config)))
        return made[0]

    return transit


def _gate_upkeep(payments: Payments, backoffice: BackOffice | None = None) -> Callable[[], None]:
    """A gate's upkeep between taps: the journal's housekeeping, the automatic day close (started in
    a thread of its own, `BackOffice.housekeeping`), and once a day the journey state of weeks no cap
    needs any more dropped."""
    pruned: list[float] = []

    def upkeep() -> None:
        payments.housekeeping()
        if backoffice is not None:
            backoffice.housekeeping()
        now = time.monotonic()
        if pruned and now - pruned[0] < 24 * 3600:
            return
        pruned[:] = [now]
        today = payments.business_date()
        from terminal.farepay import FarePayments

        try:
            dropped = FarePayments(payments).forget_transit_state(today - timedelta(days=21))
        except StorageError as exc:
            log.warning("transit journey state not pruned: %s", exc.message)
            return
        if dropped:
            log.info("dropped the journey state of %d cards from weeks before %s", dropped, today)

    return upkeep


def verify_data_dir(config: Config, data_dir: Path, *, signatures: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> tuple[VerifyReport, Path]:
    """`journal verify`: the data directory's journal checked without writing anything (no journal,
    key or directory is created; a technician's read-only copy works too)."""
    path = data_dir / JOURNAL_FILE
    keys = load_keys(data_dir)
    if keys is None:
        problem = ("the terminal's keys are missing while its journal is there" if path.exists()
                   else f"no walletpos terminal in {data_dir} (no keys, no journal)")
        return VerifyReport(not path.exists() and not data_dir.exists(), 0, 0, problem=problem,
                            problems=(problem,)), path
    try:
        enrolment = Enrolment.load(data_dir)
    except (SecurityError, StorageError) as exc:
        enrolment = None
        unreadable: str | None = f"the enrolment file cannot be used ({exc.message})"
    else:
        unreadable = None
    ack_key = enrolment.ack_public_key if enrolment is not None else None
    report = verify_journal(path, keys, signatures=signatures, ack_key=ack_key, expect_journal=True,
                            progress=progress)
    extra = [unreadable] if unreadable else []
    if enrolment is not None and enrolment.public_key != keys.public_key_bytes.hex():
        extra.append("the terminal key differs from the one enrolled at the backend: the key file was replaced")
    if not extra:
        return report, path
    problems = (*extra, *report.problems)
    return replace(report, ok=False, problem=problems[0], problems=problems), path


__all__ = ["JOURNAL_FILE", "Devices", "GateDevices", "bootstrap", "open_storage", "resolve_data_dir", "verify_data_dir"]
