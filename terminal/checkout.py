"""Taking one payment at the counter: race the card reader and the camera, then decide.

A `DeviceWatcher` thread (`terminal.watchers`) owns each device and, only while a sale is armed,
hands each presentation (a card in the field, a decoded code) to the checkout.
`Checkout.take_payment` arms the watchers, takes the first presentation, turns it into a payment
request through an interpreter (the EMV kernel for cards, the payload parsers for codes) and lets
`Service.pay` decide and journal it.

A card left on the reader after its payment is not read again for the next sale until it has been
taken away: the reader watcher waits for the field to be empty first.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from drivers.base import (
    CardReader,
    CardRemovedError,
    CardSession,
    CodeScanner,
    ReaderUnavailableError,
    ScannedCode,
)
from drivers.pinpad import seal_pin
from terminal import codepay
from terminal.backend import PaymentStatus
from terminal.cardpay import CardPayments
from terminal.codepay import MerchantCodes, MerchantQr
from terminal.core.money import Money
from terminal.core.rules import PaymentRequest
from terminal.errors import CardError, QrPayloadError, ReaderError, StorageError, WalletposError
from terminal.journal import CodeClaim, TxnRow
from terminal.payment import CardFacts, PaymentResult
from terminal.payments import Payments
from terminal.watchers import DeviceWatcher, ReaderWatcher, ScannerWatcher, release

log = logging.getLogger("walletpos.checkout")

Progress = Callable[..., None]  # progress(i18n_key, **values)
T = TypeVar("T")
# how soon a wait for a card or a code sees its cancel (the cashier's Escape, or cash taken instead):
# the screen that takes the cash waits for the wait to end, so the cashier sees it
CANCEL_POLL_S = 0.02


@dataclass(frozen=True)
class CheckoutResult:
    """The outcome of one presentation, for the screen. `outcome` is one of: approved, declined,
    need_cvm, try_another_card, tap_again, storage (declined, cannot record), cancelled,
    not_a_payment_code, code_refused (nothing paid; the screen keeps waiting)."""

    outcome: str
    amount: Money
    reasons: tuple[str, ...] = ()
    auth_mode: str = "none"
    row: TxnRow | None = None
    masked_pan: str | None = None
    detail: str = ""
    pending_cvm: Any = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_payment(cls, amount: Money, result: PaymentResult, facts: CardFacts,
                     pending_cvm: Any = None) -> CheckoutResult:
        outcome = result.outcome
        if result.reasons == ("storage_failure",):
            outcome = "storage"
        return cls(outcome, amount, tuple(result.reasons), result.auth_mode, result.row, facts.masked_pan,
                   "" if outcome in ("approved", "declined", "need_cvm") else result.message,
                   pending_cvm if outcome == "need_cvm" else None, dict(result.timings_ms))


@dataclass(frozen=True)
class Interpretation:
    """What an interpreter makes of a presentation: a payment request to decide, or a refusal."""

    request: PaymentRequest | None = None
    facts: CardFacts = CardFacts()
    claim: CodeClaim | None = None
    refusal: CheckoutResult | None = None


class Interpreter(Protocol):
    def card(self, session: CardSession, amount: Money, operator: str | None) -> Interpretation: ...

    def code(self, code: ScannedCode, amount: Money, operator: str | None) -> Interpretation: ...


class PaymentInterpreter:
    """Turns presentations into payment requests: the EMV kernel for cards (`terminal.cardpay`), the
    payload parsers for codes (`terminal.codepay`)."""

    def __init__(self, cards: CardPayments) -> None:
        self.cards = cards
        self.payments = cards.payments

    def card(self, session: CardSession, amount: Money, operator: str | None) -> Interpretation:
        card = self.cards.prepare(session, amount)
        return Interpretation(card.request, card.facts)

    def code(self, code: ScannedCode, amount: Money, operator: str | None) -> Interpretation:
        try:
            payment = codepay.prepare_code_payment(self.payments, code.text, amount)
        except QrPayloadError as exc:
            declined = codepay.journal_refusal(self.payments, code.text, amount, exc, operator=operator)
            if declined is None:
                outcome = "not_a_payment_code" if exc.reason in ("not_a_payment_code", "merchant_code") \
                    else "code_refused"
                return Interpretation(refusal=CheckoutResult(outcome, amount, (exc.reason,), detail=exc.message))
            row = (self.payments.require_journal().txns.get(declined.transaction_id)
                   if declined.transaction_id else None)
            return Interpretation(refusal=CheckoutResult("declined", amount, declined.reasons, "none", row))
        return Interpretation(payment.request, payment.facts, payment.claim)


# ------------------------------------------------------------------------------------------------
# the checkout


@dataclass(frozen=True)
class PendingCvm:
    """A payment waiting for the customer's PIN: decided again with CVM done once it is entered."""

    request: PaymentRequest
    facts: CardFacts
    claim: CodeClaim | None = None


class Checkout:
    merchant_poll_s = 1.0  # how often a merchant code on screen is asked about at the backend

    def __init__(self, payments: Payments, interpreter: Interpreter, merchant_codes: MerchantCodes, *,
                 open_reader: Callable[[], CardReader] | None = None,
                 open_scanner: Callable[[], CodeScanner] | None = None,
                 seal_pin: Callable[[str, PendingCvm], str | None] | None = None, start: bool = True) -> None:
        self.payments = payments
        self.merchant_codes = merchant_codes
        self.interpreter = interpreter
        self.seal_pin = seal_pin
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._pending: PendingCvm | None = None
        self._selling = False  # a sale is waiting for a card or a code (take_payment)
        self._code_lock = threading.Lock()
        self._code_watchers = 0  # callers of next_code (the camera stays armed while there is one)
        self.reader = ReaderWatcher(open_reader, self._queue_put) if open_reader else None
        self.scanner = ScannerWatcher(open_scanner, self._queue_put) if open_scanner else None
        if start:
            self.start()

    def start(self) -> None:
        """Open the devices, each in its watcher's thread (at construction unless `start=False`; a
        second call does nothing)."""
        for watcher in self.watchers:
            if watcher.ident is None:
                watcher.start()

    @property
    def watchers(self) -> list[DeviceWatcher]:
        return [w for w in (self.reader, self.scanner) if w is not None]

    def _queue_put(self, kind: str, item: Any) -> None:
        self._queue.put((kind, item))

    def has_devices(self) -> bool:
        return bool(self.watchers)

    def device_states(self) -> tuple[str, str]:
        return (self.reader.status.state if self.reader else "none",
                self.scanner.status.state if self.scanner else "none")

    def close(self) -> None:
        for watcher in self.watchers:
            watcher.stop()
        for watcher in self.watchers:
            if watcher.ident is not None:  # never started: nothing to wait for
                watcher.join(timeout=3)

    # -- one sale ---------------------------------------------------------------------------------

    def _arm(self, on: bool) -> None:
        for watcher in self.watchers:
            if on:
                watcher.armed.set()
            else:
                watcher.armed.clear()

    def _drain(self) -> None:
        while True:
            try:
                kind, item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._release(kind, item)

    def _release(self, kind: str, item: Any) -> None:
        release(kind, item, self.reader)

    def take_payment(self, amount: Money, *, operator: str | None, cancel: threading.Event,
                     progress: Progress | None = None, note: str = "",
                     details: Mapping[str, Any] | None = None) -> CheckoutResult:
        """Wait for a card or a code (until `cancel`), decide and journal the payment. `details` (the
        sale's items and tax, its tender) go into the journaled row with the note."""
        progress = progress or (lambda *_a, **_k: None)
        if details:
            note_details = {**details, **({"note": note} if note else {})}
        else:
            note_details = {"note": note} if note else {}
        self._drain()
        self._selling = True
        self._arm(True)
        try:
            while not cancel.is_set():
                try:
                    kind, item = self._queue.get(timeout=CANCEL_POLL_S)
                except queue.Empty:
                    continue
                self._arm(False)
                try:
                    return self._decide(kind, item, amount, operator, progress, note_details)
                finally:
                    self._release(kind, item)
            return CheckoutResult("cancelled", amount)
        finally:
            self._selling = False
            self._arm(False)

    def _decide(self, kind: str, item: Any, amount: Money, operator: str | None, progress: Progress,
                extra: Mapping[str, Any]) -> CheckoutResult:
        started = time.perf_counter()
        progress("present.reading")
        try:
            found = (self.interpreter.card(item, amount, operator) if kind == "card"
                     else self.interpreter.code(item, amount, operator))
        except CardRemovedError as exc:
            return CheckoutResult("tap_again", amount, ("card_removed",), detail=exc.message)
        except ReaderUnavailableError as exc:  # the reader went away mid-read: tap again once it is back
            return CheckoutResult("tap_again", amount, ("reader_unavailable",), detail=exc.message)
        except StorageError as exc:
            return CheckoutResult("storage", amount, ("storage_failure",), detail=exc.message)
        except CardError as exc:
            outcome = exc.outcome if exc.outcome in ("tap_again", "try_another_card") else "try_another_card"
            return CheckoutResult(outcome, amount, (exc.outcome,), detail=exc.message)
        except QrPayloadError as exc:
            return CheckoutResult("code_refused", amount, (exc.reason,), detail=exc.message)
        if found.refusal is not None:
            return found.refusal
        assert found.request is not None
        progress("present.deciding")
        facts = found.facts
        if extra:
            facts = replace(facts, details={**facts.details, **extra})
        result = self.payments.pay(found.request, facts, operator=operator, claim=found.claim, started=started)
        pending = PendingCvm(found.request, facts, found.claim) if result.outcome == "need_cvm" else None
        self._pending = pending
        return CheckoutResult.from_payment(amount, result, facts, pending)

    def with_next_card(self, read: Callable[[CardSession], T], *, cancel: threading.Event,
                       timeout_s: float) -> T | None:
        """The technician's test tap: only the reader armed, `read(session)` on the next card, then
        the card released as after a sale. None when no card came before `cancel` or `timeout_s`."""
        reader = self.reader
        if reader is None:
            raise ReaderError("no card reader is attached to this terminal")
        self._drain()
        reader.armed.set()
        deadline = time.monotonic() + timeout_s
        try:
            while not cancel.is_set() and time.monotonic() < deadline:
                try:
                    kind, item = self._queue.get(timeout=CANCEL_POLL_S)
                except queue.Empty:
                    continue
                if kind != "card":
                    continue
                reader.armed.clear()
                try:
                    return read(item)
                finally:
                    self._release(kind, item)
            return None
        finally:
            reader.armed.clear()

    # -- the terminal's own code (merchant-presented QR) ---------------------------------------------

    def merchant_qr(self, amount: Money, operator: str | None = None,
                    details: Mapping[str, Any] | None = None) -> MerchantQr:
        """The dynamic EMVCo merchant code for this sale (`codepay.MerchantQr`: payload, reference),
        recorded in the journal before it is shown and watched by this checkout until
        `wait_merchant_qr` / `close_merchant_qr` are done with it. `details` (the sale's items) go
        into the row of the payment made with it."""
        return self.merchant_codes.create(amount, operator=operator, on_screen=True, details=details)

    def wait_merchant_qr(self, qr: MerchantQr, *, cancel: threading.Event, operator: str | None = None,
                         poll_s: float | None = None) -> CheckoutResult | None:
        """Ask the backend every `poll_s` (default: `merchant_poll_s`) whether the customer paid `qr`;
        journal the payment when they did. None when cancelled first (then call `close_merchant_qr`).
        An unreachable backend is asked again at the next poll. A payment the backend reports after
        `cancel` was set (the question was already on its way) is still journaled and returned."""
        interval = self.merchant_poll_s if poll_s is None else poll_s
        while not cancel.wait(interval):
            try:
                status = self.merchant_codes.status(qr.reference)
            except WalletposError as exc:
                log.info("merchant code %s: backend not answering (%s)", qr.reference, exc)
                continue
            if status.status == "pending":
                continue
            return self._merchant_qr_outcome(qr, status, operator)
        return None

    def close_merchant_qr(self, qr: MerchantQr, operator: str | None = None) -> CheckoutResult | None:
        """The code leaves the screen unpaid: close it at the backend so that it can no longer be paid.
        Returns the sale (journaled) when the customer had paid it just before, else None. When the
        backend does not answer, the code stays open and marked: the sync worker closes it (and
        records a payment made with it meanwhile) once the backend answers."""
        try:
            row = self.merchant_codes.close(qr.reference, qr.transaction_id, qr.amount, operator)
        except StorageError as exc:
            return CheckoutResult("storage", qr.amount, ("storage_failure",), detail=exc.message)
        except WalletposError as exc:
            log.warning("merchant code %s not closed yet (%s); the sync worker will close it", qr.reference, exc)
            return None
        finally:
            self.merchant_codes.watch(qr.reference, False)
        return None if row is None else _merchant_result(qr, row)

    def _merchant_qr_outcome(self, qr: MerchantQr, status: PaymentStatus, operator: str | None) -> CheckoutResult:
        try:
            row = self.merchant_codes.record_outcome(qr.reference, qr.transaction_id, qr.amount, status, operator)
        except StorageError as exc:
            # the customer has paid at the backend; the journal cannot record it: say so plainly
            return CheckoutResult("storage", qr.amount, ("storage_failure",), detail=exc.message)
        finally:
            self.merchant_codes.watch(qr.reference, False)
        return _merchant_result(qr, row)

    def pin_binding(self) -> tuple[bytes, dict[str, Any]] | None:
        """What a PIN pad needs to seal the customer's PIN for the payment waiting for it: the
        backend's sealing key and the card token and amount the PIN authorises. None when no payment
        waits for a PIN, or the terminal is not enrolled (no key: the PIN cannot be verified)."""
        pending = self._pending
        key = self.payments.sealing_key()
        if pending is None or key is None:
            return None
        return key, pin_binding(pending)

    def retry_with_pin_block(self, cancel: threading.Event, pin_block: str) -> CheckoutResult:
        """Decide the payment that needed the customer's PIN again, with the PIN block a PIN pad
        sealed (the clear PIN never reaches the terminal): online, where the backend verifies it."""
        pending = self._pending
        self._pending = None
        if pending is None:
            raise WalletposError("no payment is waiting for a PIN")
        request = replace(pending.request, cvm_performed=True, online_pin=True)
        result = self.payments.pay(request, pending.facts, claim=pending.claim,
                                   online_extras={"sealed_pin": pin_block})
        return CheckoutResult.from_payment(request.amount, result, pending.facts)

    def drop_pending_pin(self) -> None:
        """The payment waiting for a PIN is given up (the customer cancelled on the PIN pad)."""
        self._pending = None

    def next_code(self, cancel: threading.Event) -> str | None:
        """The next code shown to the camera while no sale waits for a payment (a product's code on
        the checkout screen), or None when `cancel` is set first. A card or a code that arrives for a
        sale meanwhile is left for it."""
        scanner = self.scanner
        if scanner is None:
            cancel.wait()
            return None
        with self._code_lock:
            self._code_watchers += 1
        scanner.armed.set()
        try:
            while not cancel.is_set():
                if self._selling:
                    cancel.wait(0.1)
                    continue
                try:
                    kind, item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if kind != "code" or cancel.is_set() or self._selling:
                    self._queue.put((kind, item))  # not for the item look-up: left for the sale
                    cancel.wait(0.05)
                    continue
                return str(item.text)
            return None
        finally:
            with self._code_lock:
                self._code_watchers -= 1
                if not self._selling and not self._code_watchers:
                    scanner.armed.clear()

    def retry_with_pin(self, cancel: threading.Event, pin: str) -> CheckoutResult:
        """Decide the payment that needed the customer's PIN again, with CVM performed (online PIN:
        the PIN goes to the backend sealed, never stored)."""
        pending = self._pending
        self._pending = None
        if pending is None:
            raise WalletposError("no payment is waiting for a PIN")
        sealed = self.seal_pin(pin, pending) if self.seal_pin else None
        request = replace(pending.request, cvm_performed=True, online_pin=True)
        result = self.payments.pay(request, pending.facts, claim=pending.claim,
                                  online_extras={"sealed_pin": sealed} if sealed else None)
        return CheckoutResult.from_payment(request.amount, result, pending.facts)


def _merchant_result(qr: MerchantQr, row: TxnRow) -> CheckoutResult:
    """The sale journaled for a merchant code, as the result screen shows it (decided online)."""
    return CheckoutResult("approved" if row.approved else "declined", qr.amount, row.reasons, "online", row)


def pin_binding(pending: PendingCvm) -> dict[str, Any]:
    """What a sealed PIN block is bound to: the card token and the amount the PIN authorises."""
    return {"card_token": pending.facts.card_token, "amount": pending.request.amount.minor,
            "currency": pending.request.amount.currency.alpha}


def seal_pin_block(payments: Payments, pin: str, pending: PendingCvm) -> str | None:
    """The customer's PIN for online verification, sealed to the backend's key with the card token
    and the amount it authorises (never stored, never logged). None when not enrolled. (A PIN pad
    seals inside the device with `drivers.pinpad.seal_pin`, the same format.)"""
    key = payments.sealing_key()
    if key is None:
        return None
    return seal_pin(key, pin, pin_binding(pending))
