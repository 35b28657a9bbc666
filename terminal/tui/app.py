"""The walletpos TUI: a view over `terminal.service.Service`.

The app renders state and forwards intent. Anything that may block (journal writes, PIN hashing,
card and camera waits, the backend) runs in thread workers that report back with messages or
`call_from_thread`; the event loop never waits on a device or the network. Every screen has the
status bar on top and the footer of its key bindings at the bottom; every binding is also in the
command palette (ctrl+p). Screens are localised: their binding descriptions and texts come from
`terminal.i18n` in the configured locale (`en` or `zh-CN`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget

from terminal.core.money import Money, format_money
from terminal.errors import WalletposError
from terminal.i18n import LOCALES, t
from terminal.operators import Operator
from terminal.service import Service
from terminal.sync import SyncStatus
from terminal.tui.host import CustomerSide, DemoControls
from terminal.tui.screens.signin import SignInScreen
from terminal.tui.widgets import StatusSnapshot

log = logging.getLogger("walletpos.tui")

S = TypeVar("S", bound=Screen)

_LOCALIZED: dict[tuple[type, str], type] = {}

HOLD_KEYS_LIMIT_S = 1.5  # keys held while screens change are let go after this at the latest


def localized(cls: type[S], locale: str) -> type[S]:
    """`cls` with its binding descriptions (i18n keys) translated into `locale`."""
    key = (cls, locale)
    if key not in _LOCALIZED:
        chain = [c for c in reversed(cls.__mro__) if "BINDINGS" in c.__dict__ and c.__module__.startswith("terminal.")]
        merged: dict[str, Binding] = {}
        for c in chain:
            for b in c.__dict__["BINDINGS"]:
                if isinstance(b, Binding):
                    merged[f"{b.key}\0{b.action}"] = b
        bindings = [Binding(b.key, b.action, t(locale, b.description) if b.description else "", show=b.show,
                            key_display=b.key_display, priority=b.priority) for b in merged.values()]
        _LOCALIZED[key] = type(cls.__name__, (cls,), {"BINDINGS": bindings, "__module__": cls.__module__})
    return _LOCALIZED[key]  # type: ignore[return-value]


def backend_state(sync: SyncStatus) -> str:
    """online, offline, connecting (never tried yet), not_enrolled or disabled, from a SyncStatus."""
    if not sync.enabled:
        return "disabled"
    if not sync.enrolled:
        return "not_enrolled"
    if sync.breaker_state != "closed":
        return "offline"
    if sync.last_error_at and (not sync.last_success_at or sync.last_error_at > sync.last_success_at):
        return "offline"
    return "online" if sync.last_success_at else "connecting"


def collect_status(service: Service) -> StatusSnapshot:
    """Read what the status bar shows (journal queue, backend, devices): runs in a worker thread."""
    now = service.clock()
    queue, oldest, backend, hold = 0, None, "disabled", None
    readable = service.storage_problem is None
    if readable:
        try:
            summary = service.queue_summary()
            queue = summary.pending
            if summary.oldest_pending_at is not None:
                oldest = max(0.0, (now - summary.oldest_pending_at).total_seconds())
            backend = backend_state(service.sync_status())
            hold = service.integrity_problem()  # the journal's authenticated head: one read
        except WalletposError:  # the journal cannot be read now (held too long, broken): storage shows red
            readable = False
    reader, camera = service.device_states()
    return StatusSnapshot(at=now, backend=backend, queue=queue, oldest_pending_s=oldest, reader=reader,
                          camera=camera, storage_ok=readable and not service.last_storage_error,
                          integrity_hold=hold)


class WalletposApp(App):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "walletpos"
    ENABLE_COMMAND_PALETTE = True

    status: reactive[StatusSnapshot] = reactive(StatusSnapshot, always_update=True)
    operator: reactive[Operator | None] = reactive(None)

    def __init__(self, service: Service, *, locale: str | None = None, status_interval: float | None = 1.0,
                 demo: DemoControls | None = None, customer: CustomerSide | None = None,
                 start_sync: bool = False) -> None:
        super().__init__()
        self.service = service
        self.start_sync = start_sync  # start the service's sync once the first screen is on the terminal
        self.locale = locale or service.config.display.locale
        self.status_interval = status_interval
        self.demo = demo
        # the customer's PIN pad and display (the demo brings simulated ones)
        self.customer = customer if customer is not None else (demo.customer_side() if demo is not None else None)
        self.last_activity = time.monotonic()
        self.idle_limit = service.config.operators.idle_sign_out_minutes * 60
        self._held_keys: list[events.Key] | None = None  # see `hold_keys`
        self._hold_focus: Widget | None = None
        self._hold_number = 0

    # -- localisation and screens ---------------------------------------------------------------

    def tr(self, key: str, **values: object) -> str:
        return t(self.locale, key, **values)

    def money(self, amount: Money) -> str:
        display = self.service.config.display
        return format_money(amount, decimal_sep=display.decimal_separator, group_sep=display.group_separator)

    def switch_language(self, locale: str) -> None:
        """Every text in `locale` from now on: the sign-in or checkout screen is built again in it (the
        sale on the checkout kept as it is); the status bar follows at once."""
        from terminal.tui.screens.checkout import CheckoutScreen

        if locale not in LOCALES or locale == self.locale:
            return
        self.locale = locale
        self.title = self.tr("app.title")
        screen = self.screen
        if isinstance(screen, CheckoutScreen):
            self.switch_screen(self.make(CheckoutScreen, screen.sale, screen.ticket, typed=screen.entry.typed))
        elif isinstance(screen, SignInScreen):
            self.switch_screen(self.make(SignInScreen))
        self.status = self.status  # the status bar in the new language
        self.notify(self.tr("app.language_switched"))

    def next_language(self) -> str:
        return LOCALES[(LOCALES.index(self.locale) + 1) % len(LOCALES)] if self.locale in LOCALES else LOCALES[0]

    def action_demo_customer(self) -> None:
        """Ctrl+D in the demo: what the customer sees (the customer display and the PIN pad)."""
        from terminal.tui.screens.customer import CustomerScreen

        if self.demo is not None:
            self.push_screen(self.make(CustomerScreen))

    # -- quitting: never by a cashier alone -------------------------------------------------------

    async def action_quit(self) -> None:
        """Ctrl+Q (and Quit in the command palette): a supervisor or technician approves with their
        id and PIN (one who is signed in confirms); a cashier cannot close the product alone."""
        from terminal.tui.screens.dialogs import ConfirmPrompt, SupervisorPrompt

        if self.operator is not None and self.operator.role in ("supervisor", "technician"):
            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.exit()

            self.push_screen(self.make(ConfirmPrompt, self.tr("quit.title"), self.tr("quit.confirm")), confirmed)
            return

        def approved(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self._check_quit(*answer)

        self.push_screen(self.make(SupervisorPrompt, "supervisor.title_quit"), approved)

    @work(thread=True, exclusive=True, group="quit")
    def _check_quit(self, operator_id: str, pin: str) -> None:
        try:
            check = self.service.operators.check(operator_id, pin, now=self.service.clock(), purpose="quit")
        except WalletposError as exc:
            self.call_from_thread(self.notify, exc.message, severity="error")
            return
        if check.ok and check.operator is not None and check.operator.role in ("supervisor", "technician"):
            self.call_from_thread(self.exit)
            return
        why = "not_allowed" if check.ok else check.reason
        self.call_from_thread(self.notify, self.tr(f"quit.refused.{why}") if f"quit.refused.{why}" in
                              _QUIT_REASONS else self.tr("quit.refused.wrong_pin"), severity="warning")

    def make(self, cls: type[S], *args: Any, **kwargs: Any) -> S:
        return localized(cls, self.locale)(*args, **kwargs)

    def on_mount(self) -> None:
        self.title = self.tr("app.title")
        self.push_screen(self.make(SignInScreen))
        self.call_after_refresh(self._after_first_paint)
        if self.status_interval:
            self.set_interval(self.status_interval, self.refresh_status)
            self.set_interval(15, self._check_idle)
            self.set_interval(5, self._housekeeping)

    def _after_first_paint(self) -> None:
        """Once the sign-in screen is on the terminal, while the cashier types a PIN: open the reader
        and the camera (`walletpos tui` holds them until now: opening a camera takes a few hundred ms
        of CPU), start the sync (`start_sync`), collect the status bar's figures and load the sale's
        screens (~60 ms). The start waits for none of them, and by the first sale they are ready."""
        self.service.start_devices()
        if self.start_sync:
            self.service.start_sync()
        self.refresh_status()
        from terminal.tui.screens import checkout, present, receipt, transactions  # noqa: F401

    # -- status bar -----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="status")
    def refresh_status(self) -> None:
        snapshot = collect_status(self.service)
        self.call_from_thread(setattr, self, "status", snapshot)

    @work(thread=True, exclusive=True, group="housekeeping")
    def _housekeeping(self) -> None:
        self.service.housekeeping()

    # -- operators ------------------------------------------------------------------------------

    def signed_in(self, operator: Operator) -> None:
        from terminal.tui.screens.checkout import CheckoutScreen
        from terminal.tui.screens.diagnostics import DiagnosticsScreen

        self.operator = operator
        self.last_activity = time.monotonic()
        home = DiagnosticsScreen if operator.role == "technician" else CheckoutScreen
        self.switch_screen(self.make(home))

    def sign_out(self) -> None:
        if self.operator is not None:
            self._audit_sign_out(self.operator.id)
        self.operator = None
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(self.make(SignInScreen))

    @work(thread=True, group="audit")
    def _audit_sign_out(self, operator_id: str) -> None:
        """Off the event loop (a journal write), and never in the way: the operator is signed out
        whether or not the journal can record it (full disk: logged, and storage shows red)."""
        try:
            self.service.audit("sign_out", actor=operator_id)
        except WalletposError as exc:
            log.warning("sign-out of %s not recorded: %s", operator_id, exc.message)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self.last_activity = time.monotonic()
            if not event.is_forwarded:  # a key from the terminal (not one coming back from a screen)
                if self._held_keys is not None:
                    self._held_keys.append(event)
                    return
                self._hold_after(event.key)
        await super().on_event(event)

    # -- keys typed while one screen gives way to another -------------------------------------------

    def _hold_after(self, key: str) -> None:
        """Hold the keys after `key` when the screen on top says `key` takes it away (see `hold_keys`):
        decided here, before `key` is sent on, because a screen gets every key sent to it, in its own
        queue, also those typed after the one that makes it go."""
        from terminal.tui.screens.base import BaseDialog, BaseScreen

        screen = self.screen
        if key == "ctrl+q" and not isinstance(screen, BaseDialog):
            self.hold_keys()  # the approval (or the confirmation) asked by `action_quit` takes what comes next
        elif isinstance(screen, (BaseScreen, BaseDialog)) and screen.holds_keys_after(key):
            self.hold_keys()

    def hold_keys(self, limit_s: float = HOLD_KEYS_LIMIT_S) -> None:
        """Keys typed from now on wait, in order, until `release_keys` (at most `limit_s`): a key that
        leaves a screen for one that is not up yet (Enter after a paid sale: the payment screens close,
        the checkout clears for the next sale) must not hand the keys typed right after it to the
        screens on their way out, or have them cleared with the old sale."""
        self._held_keys = []
        self._hold_focus = self.focused  # what had the focus when the hold began (see `release_keys_on_focus`)
        self._hold_number += 1
        number = self._hold_number
        self.set_timer(limit_s, lambda: self.release_keys(number))

    def release_keys(self, hold: int | None = None) -> None:
        """The held keys go to what is on screen now, in the order they were typed, ahead of any key
        that comes after them (they are handled on the app's own loop before its next message).
        With `hold`, only if that hold is still the one in force (see `release_keys_later`)."""
        if self._held_keys is not None and (hold is None or hold == self._hold_number):
            self.call_next(self._replay_held_keys, self._hold_number)

    def release_keys_on_focus(self, widget: Widget) -> None:
        """`widget` got the focus: the held keys go to it if it has the focus now and is not what had
        it when the hold began (a focus event that comes late, for an earlier change, lets nothing go)."""
        if self._held_keys is not None and widget is self.focused and widget is not self._hold_focus:
            self.release_keys()

    def key_hold(self) -> int:
        """The hold in force now (a number; any later hold has another), for `release_keys`."""
        return self._hold_number

    def release_keys_later(self, hold: int | None = None) -> None:
        """`release_keys` on the app's next turn (after a focus change asked for now), for the hold in
        force now (or `hold`): if its keys were let go meanwhile and one of them started a new hold
        (Tab to the next field), that one waits for its own release."""
        self.call_later(self.release_keys, self._hold_number if hold is None else hold)

    async def _replay_held_keys(self, hold: int) -> None:
        if hold != self._hold_number:  # let go already (asked twice), and maybe a new hold since
            return
        keys, self._held_keys = self._held_keys, None
        self._hold_number += 1
        for key in keys or ():
            await self.on_event(events.Key(key.key, key.character))

    def _check_idle(self) -> None:
        if self.operator is not None and self.idle_limit and time.monotonic() - self.last_activity > self.idle_limit:
            self.sign_out()

    # -- feedback -------------------------------------------------------------------------------

    def ring(self) -> None:
        if self.service.config.display.bell:
            self.bell()

    # -- command palette: every binding of the active screen ------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from terminal.tui.screens.checkout import CheckoutScreen

        # Textual's own commands (theme, keys, screenshot) are left out: they are in English only and a
        # till has no use for them; quitting is the product's own (approved, see `action_quit`)
        yield SystemCommand(self.tr("action.quit"), self.tr("action.quit_help"), self.action_quit)
        if isinstance(screen, (CheckoutScreen, SignInScreen)):
            other = self.next_language()
            yield SystemCommand(self.tr("action.language_to", language=t(other, "language.name")),
                                self.tr("action.language_help"), partial(self.switch_language, other))
        seen: set[str] = set()
        for _key, (_node, binding, enabled, _tooltip) in screen.active_bindings.items():
            if not binding.description or not enabled or binding.action in seen:
                continue
            seen.add(binding.action)
            run: Callable[[], Any] = partial(screen.run_action, binding.action)
            yield SystemCommand(binding.description, f"{self.get_key_display(binding)}", run)


_QUIT_REASONS = {"quit.refused.not_allowed", "quit.refused.wrong_pin", "quit.refused.locked",
                 "quit.refused.unknown_operator", "quit.refused.inactive"}


def make_app(service: Service, **kwargs: Any) -> WalletposApp:
    """The factory used by `walletpos tui`, `walletpos demo`, the tests and the benchmarks."""
    return WalletposApp(service, **kwargs)
