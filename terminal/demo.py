"""`walletpos demo`: the whole product on one machine without hardware.

It starts the sandbox wallet backend (its SQLite file kept in the demo data directory, so the
terminal stays enrolled from one run to the next), wires the simulated reader and the simulated
camera into the checkout, seeds demo operators when there are none, and gives the TUI keys to tap
each virtual card, show a signed or a numeric wallet code to the camera, and pull the network (the
backend process is stopped) and restore it, so offline approval, queueing and sync are visible.

The sandbox is the `sandbox` package of the walletpos distribution (the `sandbox` extra).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drivers.customerdisplay import SimCustomerDisplay
from drivers.pinpad import SimPinPad
from terminal.bootstrap import Devices, bootstrap
from terminal.config import Config
from terminal.core import qrpay
from terminal.core.money import Money
from terminal.core.rules import WalletTier
from terminal.errors import WalletposError
from terminal.service import Service
from terminal.transit import GatePlace
from terminal.tui.host import CustomerSide

log = logging.getLogger("walletpos.demo")

DEMO_PORT = 8765


def demo_port(environ: Mapping[str, str]) -> int:
    """The port the demo's sandbox tries first: $WALLETPOS_DEMO_PORT (0 is any free port; the test
    suite sets it so that demos in parallel tests never take the port of the embedded defaults),
    else 8765, the backend URL of the embedded defaults."""
    text = environ.get("WALLETPOS_DEMO_PORT", "").strip()
    return int(text) if text.isdigit() and int(text) <= 65535 else DEMO_PORT
ISSUER_KEY_ID = "demo-issuer"
DEMO_CARD_PIN = "1234"  # the sandbox's test PIN of every card it holds no other PIN for
DEMO_WRONG_PIN = "9999"


@dataclass(frozen=True)
class DemoOperator:
    id: str
    name: str
    role: str
    pin: str


DEMO_OPERATORS = (
    DemoOperator("1001", "Demo Cashier", "cashier", "1111"),
    DemoOperator("2001", "Demo Supervisor", "supervisor", "2222"),
    DemoOperator("3001", "Demo Technician", "technician", "3333"),
)

# wallets the demo's signed codes come from: (wallet id, tier)
DEMO_WALLETS = {
    "real_name": ("W-DEMO-0001", WalletTier.REAL_NAME),
    "unverified": ("W-DEMO-0002", WalletTier.UNVERIFIED),
}


# virtual cards the demo taps, on keys 1..9 of the present screen (profiles in drivers/sim/profiles.py)
DEMO_CARDS = ("visa", "mastercard", "unionpay", "multi_aid", "expired", "denied", "garbage", "pulled", "blocked")


class _ReaderHandle:
    """What the checkout opens: the demo's one simulated reader, which stays in place (like the USB
    device itself) when the checkout closes its handle after the reader was unplugged."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self.name = reader.name

    def wait_for_card(self, timeout: float) -> Any:
        return self._reader.wait_for_card(timeout)

    def status(self) -> Any:
        return self._reader.status()

    def close(self) -> None:
        pass


class DemoError(WalletposError):
    title = "Demo"


def _sandbox_module() -> Any:
    """The sandbox wallet backend (package `sandbox`, installed with the `sandbox` extra), imported
    only when the demo starts: nothing else in the terminal depends on it."""
    try:
        import sandbox
    except ModuleNotFoundError as exc:
        raise DemoError(f"the demo needs the sandbox wallet backend and its dependencies ({exc.name} is not "
                        "installed): pip install 'walletpos[sandbox]'") from None
    return sandbox


def demo_config(config: Config, backend_url: str) -> Config:
    """The configuration with the backend pointed at the sandbox, quick to notice it come and go."""
    backend = replace(config.backend, enabled=True, url=backend_url, breaker_reset_ms=3000,
                      connect_timeout_ms=1000, request_timeout_ms=5000, online_auth_deadline_ms=2000)
    sync = replace(config.sync, interval_ms=3000, backoff_initial_ms=1000, backoff_max_ms=5000)
    camera = replace(config.camera, source="sim:")
    return replace(config, backend=backend, sync=sync, camera=camera)


class Demo:
    def __init__(self, data_dir: Path, config: Config) -> None:
        self.data_dir = data_dir
        self.base_config = config
        self.sandbox: Any = None
        self.service: Service | None = None
        self.camera: Any = None  # drivers.sim.camera.SimulatedCamera
        self.reader: Any = None  # drivers.sim.reader.SimReader
        self._lock = threading.Lock()
        self._hide_timer: threading.Timer | None = None
        # the customer's side of the counter: a simulated PIN pad and customer display
        self.pinpad = SimPinPad()
        self.customer_display = SimCustomerDisplay()
        # signed codes the demo phone holds for when the network is pulled (wallet apps keep a few)
        self._offline_codes: dict[str, list[str]] = {"real_name": [], "unverified": []}

    # -- life cycle ---------------------------------------------------------------------------

    def _start_sandbox(self, port: int) -> Any:
        sandbox = _sandbox_module()
        (self.data_dir / "sandbox").mkdir(parents=True, exist_ok=True)
        return sandbox.start_sandbox(db_path=self.data_dir / "sandbox" / "backend.sqlite3", port=port,
                                     admin_token=self._admin_token())

    def _admin_token(self) -> str:
        path = self.data_dir / "sandbox" / "admin.token"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text().strip()

    def start(self) -> Service:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.sandbox = self._start_sandbox(demo_port(os.environ))
        except RuntimeError:  # the usual port is taken: any free one
            self.sandbox = self._start_sandbox(0)
        config = demo_config(self.base_config, self.sandbox.url)
        service = bootstrap(config, self.data_dir, configure_logging=True, devices=self._devices(config))
        self.service = service
        if service.storage_problem is not None:
            raise DemoError(f"the demo cannot open its journal: {service.storage_problem}")
        self._seed_operators(service)
        self._enrol(service)
        service.start_sync()
        return service

    def _seed_operators(self, service: Service) -> None:
        if service.has_operators():
            return
        for op in DEMO_OPERATORS:
            service.operators.add(op.id, op.name, op.role, op.pin, now=service.clock(), actor="demo")  # type: ignore[arg-type]

    def _enrol(self, service: Service) -> None:
        status = service.sync_status()
        if not status.enrolled:
            service.enrol_backend(self.sandbox.admin.enrolment_token(service.config.terminal.id))
        try:
            self.sandbox.admin.new_issuer_key(ISSUER_KEY_ID)
        except RuntimeError as exc:  # the sandbox's admin client raises RuntimeError with the HTTP answer
            if "key_exists" not in str(exc):
                raise
            # the demo's issuer key is there from an earlier run
        self._deny_demo_card(service)
        try:
            service.sync_once()  # issuer keys, limits and deny list down before the first sale
        except WalletposError as exc:
            log.warning("first sync of the demo failed: %s", exc)

    def _deny_demo_card(self, service: Service) -> None:
        """The issuer has blocked the demo's "denied" card: its token is on the backend's deny list."""
        from drivers.sim.profiles import PROFILES

        if service.keys is not None:
            self.sandbox.admin.deny(service.keys.card_token(PROFILES["denied"].pan), "lost_or_stolen")

    def _devices(self, config: Config) -> Devices:
        """The demo's simulated reader (its cards tapped from the keyboard) and camera (codes shown on
        a simulated phone)."""
        from drivers.base import ReaderUnavailableError
        from drivers.camera import CameraScanner
        from drivers.sim.phone import phone_renderer
        from drivers.simcamera import SimulatedCamera
        from drivers.simreader import SimReader

        cam = config.camera
        self.camera = SimulatedCamera(width=cam.width, height=cam.height, fps=cam.fps, render=phone_renderer)
        scanner = CameraScanner(self.camera, debounce_ms=cam.debounce_ms, backoff_max_ms=cam.reopen_backoff_max_ms)
        self.reader = SimReader(name="Demo contactless reader")

        def open_reader() -> Any:
            if self.reader.status().state == "absent":
                raise ReaderUnavailableError("the demo reader is unplugged (Ctrl+R plugs it back in)")
            return _ReaderHandle(self.reader)

        return Devices(open_reader=open_reader, open_scanner=lambda: scanner)

    def operator_hint(self) -> list[tuple[str, str, str]]:
        """(role, id, PIN) of the demo's operators, shown on the sign-in screen."""
        return [(op.role, op.id, op.pin) for op in DEMO_OPERATORS]

    # -- the customer's PIN pad and display -------------------------------------------------------

    def customer_side(self) -> CustomerSide:
        return CustomerSide(self.pinpad, self.customer_display)

    def customer_enters_pin(self, right: bool) -> bool:
        """The customer types the card's PIN (the sandbox's test PIN) or a wrong one on the PIN pad;
        False when the pad is not asking for a PIN."""
        if not self.pinpad.waiting.is_set():
            return False
        self.pinpad.customer_types(DEMO_CARD_PIN if right else DEMO_WRONG_PIN)
        return True

    def customer_cancels_pin(self) -> bool:
        if not self.pinpad.waiting.is_set():
            return False
        self.pinpad.customer_cancels()
        return True

    # -- cards and the reader --------------------------------------------------------------------

    def tap_card(self, index: int) -> str:
        """Tap virtual card number `index` (0-based in DEMO_CARDS); returns its profile name."""
        from drivers.sim.cards import make_card

        if self.reader is None:
            raise DemoError("the demo reader is not running")
        profile = DEMO_CARDS[index]
        self.reader.tap(make_card(profile))
        return profile

    def toggle_reader(self) -> bool:
        """Unplug the demo reader or plug it back in; True when it is plugged in after."""
        if self.reader is None:
            raise DemoError("the demo reader is not running")
        if self.reader.status().state == "absent":
            self.reader.plug()
            return True
        self.reader.unplug()
        return False

    def close(self) -> None:
        if self._hide_timer is not None:
            self._hide_timer.cancel()
        if self.service is not None:
            self.service.close()
        if self.sandbox is not None:
            self.sandbox.stop()

    # -- network --------------------------------------------------------------------------------

    @property
    def network_up(self) -> bool:
        return self.sandbox is not None and self.sandbox.pid is not None

    def toggle_network(self) -> bool:
        """Pull the network (stop the backend) or restore it; returns True when it is up after."""
        with self._lock:
            if self.network_up:
                for tier, stock in self._offline_codes.items():
                    stock[:] = [self._mint(tier, valid_for=900) for _ in range(5)]
                port = self.sandbox.port
                self.sandbox.stop()
                self._port = port
                return False
            self.sandbox = self._start_sandbox(getattr(self, "_port", demo_port(os.environ)))
        if self.service is not None:
            self.service.nudge_sync()
        return True

    # -- codes shown to the camera -------------------------------------------------------------

    def _show(self, text: str, seconds: float = 4.0) -> str:
        if self.camera is None:
            raise DemoError("the demo camera is not running")
        self.camera.show(text)
        if self._hide_timer is not None:
            self._hide_timer.cancel()
        self._hide_timer = threading.Timer(seconds, self.camera.hide)
        self._hide_timer.daemon = True
        self._hide_timer.start()
        return text

    def _mint(self, tier: str, valid_for: int = 60) -> str:
        wallet_id, wallet_tier = DEMO_WALLETS[tier]
        assert self.service is not None
        self._counter = max(getattr(self, "_counter", 0) + 1, time.time_ns() // 1_000_000 % 2**31)
        body = qrpay.wallet_code_body(key_id=ISSUER_KEY_ID, wallet_id=wallet_id, tier=wallet_tier,
                                      counter=self._counter, issued_at=int(time.time()), valid_for=valid_for,
                                      cap=Money(300000, self.service.currency))
        signature = self.sandbox.admin.issuer_sign(ISSUER_KEY_ID, qrpay.signing_input(body))
        return qrpay.encode_wallet_code(body, signature)

    def show_signed_code(self, tier: str = "real_name") -> str:
        """A signed wallet code shown to the camera: fresh from the issuer while the network is up,
        else one the phone got before the network was pulled."""
        if self.network_up:
            return self._show(self._mint(tier))
        if not self._offline_codes[tier]:
            raise DemoError("the demo phone has no offline codes left; restore the network (Ctrl+N)")
        return self._show(self._offline_codes[tier].pop(0))

    def pay_merchant_code(self) -> str:
        """The customer's wallet app pays the merchant code on screen (the sandbox marks it paid);
        returns its reference."""
        assert self.service is not None
        if not self.network_up:
            raise DemoError("the network is down: the wallet app cannot pay the code; restore it (Ctrl+N)")
        codes = self.service.open_merchant_codes()
        if not codes:
            raise DemoError("no merchant code is on screen; press Q first")
        code = codes[-1]
        token = self.service.keys.wallet_token(DEMO_WALLETS["real_name"][0]) if self.service.keys else None
        try:
            self.sandbox.admin.mark_paid(code["reference"], code["amount"].minor, code["amount"].currency.alpha, token,
                                         self.service.config.terminal.id)  # the terminal label in the code
        except RuntimeError as exc:
            raise DemoError(f"the wallet app could not pay the code: {exc}") from None
        return code["reference"]

    def show_numeric_code(self) -> str:
        assert self.service is not None
        prefix = self.service.config.qr.numeric_prefixes[0]
        digits = prefix + "".join(secrets.choice("0123456789") for _ in range(18 - len(prefix)))
        return self._show(digits)


# ------------------------------------------------------------------------------------------------
# the transit demo: four gates at two stations on one terminal, a passenger display, cards on keys

TRANSIT_GATES = (  # keys 1..4
    ("A-in", "PSQ", "entry"), ("A-out", "PSQ", "exit"), ("B-in", "CTP", "entry"), ("B-out", "CTP", "exit"),
)
TRANSIT_CARDS = ("visa", "mastercard", "unionpay")


def packaged_fare_table() -> Path:
    """The metro line's fare table shipped inside the package (config/fares-metro.toml links to it)."""
    return Path(__file__).resolve().parent / "data" / "fares-metro.toml"


class DemoClock:
    """The time with a demo offset (Ctrl+T moves it on 20 minutes: a journey, or the anti-passback
    time, without waiting)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


class TransitDemo(Demo):
    """`walletpos demo --transit`: the sandbox back office, one gate terminal with four gates (entry and
    exit at People's Square and at Century Park, sharing one journal, so its own view pairs every
    journey), virtual cards tapped from the keyboard and the passenger display."""

    def __init__(self, data_dir: Path, config: Config, locale: str = "en") -> None:
        super().__init__(data_dir, config)
        self.locale = locale
        self.clock = DemoClock()
        self.card = 0
        self.display: Any = None  # terminal.gate.display.PassengerDisplay, once it runs
        self.places = tuple(GatePlace(gate, station, direction) for gate, station, direction in TRANSIT_GATES)
        self._busy = threading.Lock()

    def start(self) -> Service:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.sandbox = self._start_sandbox(demo_port(os.environ))
        except RuntimeError:
            self.sandbox = self._start_sandbox(0)
        base = demo_config(self.base_config, self.sandbox.url)
        transit = replace(base.transit, fare_table=str(packaged_fare_table()), station="PSQ", direction="entry",
                          gate_id="A-in", first_rides_offline=0)
        terminal = replace(base.terminal, mode="transit")
        config = replace(base, transit=transit, terminal=terminal)
        service = bootstrap(config, self.data_dir, configure_logging=True, clock=self.clock)
        self.service = service
        if service.storage_problem is not None:
            raise DemoError(f"the demo cannot open its journal: {service.storage_problem}")
        self._enrol(service)
        self.sandbox.admin.set_fare_table(packaged_fare_table().read_text(encoding="utf-8"))
        service.start_sync()
        _ = service.fare_table
        return service

    # -- the display's keys (terminal.gate.display.GateControls) ---------------------------------------

    def hint(self) -> str:
        from terminal.i18n import t

        when = self.clock().astimezone(self.service.zone if self.service else UTC).strftime("%a %H:%M")
        return "\n".join((t(self.locale, "gate.demo.keys"),
                          t(self.locale, "gate.demo.card", card=TRANSIT_CARDS[self.card]),
                          t(self.locale, "gate.demo.clock", time=when)))

    def press(self, key: str) -> bool:
        if key in ("1", "2", "3", "4"):
            self._tap(self.places[int(key) - 1], TRANSIT_CARDS[self.card])
        elif key == "5":
            self._tap(self.places[0], "denied")
        elif key == "w":
            self._code(self.places[0])
        elif key == "tab":
            self.card = (self.card + 1) % len(TRANSIT_CARDS)
        elif key == "ctrl+t":
            self.clock.offset += timedelta(minutes=20)
        else:
            return False
        return True

    def _tap(self, place: GatePlace, profile: str) -> None:
        from drivers.sim.cards import make_card
        from drivers.simreader import SimReader

        def run() -> None:
            with self._busy:
                reader = SimReader(name="demo gate reader")
                reader.tap(make_card(profile))
                session = reader.wait_for_card(1.0)
                if session is None or self.service is None:
                    return
                with session:
                    t0 = time.perf_counter()
                    result = self.service.gate_tap(session, place, started=t0)
                self._show_event(result, place, t0)

        threading.Thread(target=run, name="demo-tap", daemon=True).start()

    def _code(self, place: GatePlace) -> None:
        def run() -> None:
            with self._busy:
                if self.service is None:
                    return
                try:
                    text = self._mint("real_name") if self.network_up else self._offline_codes["real_name"].pop(0)
                except (IndexError, RuntimeError, WalletposError) as exc:
                    log.warning("no wallet code for the demo: %s", exc)
                    return
                t0 = time.perf_counter()
                self._show_event(self.service.gate_code(text, place, started=t0), place, t0)

        threading.Thread(target=run, name="demo-code", daemon=True).start()

    def _show_event(self, result: Any, place: GatePlace, t0: float) -> None:
        from terminal.gate.lane import GateEvent

        event = GateEvent(result, self.clock(), "card", (time.perf_counter() - t0) * 1000, place)
        display = self.display
        if display is not None and display.is_running:
            display.call_from_thread(display.show, event)
