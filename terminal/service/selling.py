"""Taking money at the counter: the rules, a payment by card or code, the checkout racing the reader
and the camera for one sale, merchant codes, items, tenders and the customer's PIN pad."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terminal.cardpay import CardPayResult
from terminal.catalogue import load_catalogue
from terminal.checkout import Checkout, CheckoutResult, Progress
from terminal.codepay import CodePayResult, MerchantQr, pay_code
from terminal.core.basket import Catalogue, parse_tax_rate
from terminal.core.emv import ApduTransport
from terminal.core.money import Money
from terminal.core.rules import PaymentRequest, RuleOutcome, TerminalState
from terminal.errors import WalletposError
from terminal.journal import CodeClaim, TxnRow
from terminal.payment import CardFacts, PaymentResult
from terminal.payments import NO_FACTS
from terminal.sync import PaymentStatus

if TYPE_CHECKING:  # OpenCV loads only when a camera is opened
    from drivers.camera import CameraScanner
from terminal.service.base import ServiceBase


class SellingOps(ServiceBase):
    """What the cashier's checkout does."""

    # -- rules and payments ---------------------------------------------------------------------

    def terminal_state(self, card_token: str | None) -> TerminalState:
        return self.payments.terminal_state(card_token)

    def explain(self, request: PaymentRequest) -> tuple[RuleOutcome, TerminalState]:
        return self.payments.explain(request)

    def pay(self, request: PaymentRequest, facts: CardFacts = NO_FACTS, *, kind: str = "sale",
            operator: str | None = None, txn_id: str | None = None, claim: CodeClaim | None = None,
            online_extras: Mapping[str, Any] | None = None) -> PaymentResult:
        """Decide and journal one payment (`terminal.payments.Payments.pay`)."""
        return self.payments.pay(request, facts, kind=kind, operator=operator, txn_id=txn_id, claim=claim,
                                 online_extras=online_extras)

    def open_scanner(self, source: str | None = None) -> CameraScanner:
        """A code scanner on the configured camera (`[camera] source`, or `source`: a device, a video,
        an image, a folder of images, an rtsp:// stream or sim:)."""
        from drivers.camera import scanner_from_config

        return scanner_from_config(self.config, source)

    def pay_card(self, transport: ApduTransport, amount: Money, *, operator: str | None = None,
                 started: float | None = None) -> CardPayResult:
        """Read the card behind `transport` with the EMV kernel, decide and journal."""
        return self.cards.pay(transport, amount, operator=operator, started=started)

    def pay_code(self, text: str, amount: Money, *, operator: str | None = None) -> CodePayResult:
        """Pay with a code the customer shows (CPM, signed or numeric wallet code)."""
        return pay_code(self.payments, text, amount, operator=operator)

    # -- the checkout: reader and camera raced for one sale ---------------------------------------

    def can_take_payments(self) -> bool:
        """A reader or a camera is attached (the checkout has devices to wait on)."""
        return self._checkout is not None and self._checkout.has_devices()

    def start_devices(self) -> None:
        """Open the checkout's reader and camera when it was built with held devices
        (`Devices(held=True)`); otherwise, or a second time, nothing happens."""
        if self._checkout is not None:
            self._checkout.start()

    def _require_checkout(self) -> Checkout:
        if self._checkout is None:
            raise WalletposError("no card reader or camera is attached to this terminal")
        return self._checkout

    def take_payment(self, amount: Money, *, operator: str | None, cancel: threading.Event,
                     progress: Progress | None = None, note: str = "",
                     details: Mapping[str, Any] | None = None) -> CheckoutResult:
        """Wait for a card or a code (until `cancel`), decide and journal the payment (`details`: the
        sale's items and tax, its part in a split tender, journaled with the row)."""
        return self._require_checkout().take_payment(amount, operator=operator, cancel=cancel, progress=progress,
                                                     note=note, details=details)

    def retry_with_pin(self, cancel: threading.Event, pin: str) -> CheckoutResult:
        return self._require_checkout().retry_with_pin(cancel, pin)

    def show_merchant_qr(self, amount: Money, operator: str | None = None,
                         details: Mapping[str, Any] | None = None) -> MerchantQr:
        """The merchant code of this sale, recorded before it is shown and watched by the checkout
        (raises `codepay.MerchantCodeUnavailable`, with a sentence, when the backend cannot be told)."""
        return self._require_checkout().merchant_qr(amount, operator, details)

    def wait_merchant_qr(self, qr: MerchantQr, *, cancel: threading.Event,
                         operator: str | None = None) -> CheckoutResult | None:
        return self._require_checkout().wait_merchant_qr(qr, cancel=cancel, operator=operator)

    def close_merchant_qr(self, qr: MerchantQr, operator: str | None = None) -> CheckoutResult | None:
        return self._require_checkout().close_merchant_qr(qr, operator)

    def device_states(self) -> tuple[str, str]:
        """(reader state, camera state) for status bars: ready, card_present, absent, error, none."""
        return self._checkout.device_states() if self._checkout is not None else ("none", "none")

    # -- merchant codes -------------------------------------------------------------------------

    def merchant_qr(self, amount: Money) -> MerchantQr:
        """A merchant code no screen watches (`walletpos qr`): the sync worker settles it."""
        return self.merchant_codes.create(amount)

    def payment_status(self, reference: str) -> PaymentStatus:
        """Merchant-presented QR: has the customer paid the payment with this reference?"""
        return self.merchant_codes.status(reference)

    def cancel_merchant_payment(self, reference: str, reason: str = "closed_by_cashier") -> PaymentStatus:
        return self.merchant_codes.cancel(reference, reason)

    def open_merchant_codes(self) -> list[dict[str, Any]]:
        """Merchant codes shown and not yet closed at the backend, oldest first."""
        return self.require_journal().merchant_codes.still_open()

    def settle_merchant_codes(self) -> list[TxnRow]:
        """Record payments made with merchant codes no screen watches and close those codes."""
        return self.merchant_codes.settle()

    # -- the counter: items, tenders, the customer's PIN pad ----------------------------------------

    def catalogue(self) -> Catalogue:
        """The products of `[checkout] catalogue` (read once; empty without one)."""
        if self._catalogue is None:
            self._catalogue = load_catalogue(self.config, self.data_dir)
        return self._catalogue

    def default_tax_rate(self) -> int:
        """The tax rate of items keyed by amount (hundredths of a percent)."""
        return parse_tax_rate(self.config.checkout.default_tax_rate)

    def next_item_code(self, cancel: threading.Event) -> str | None:
        """A code shown to the camera on the checkout screen (a product's code), or None once `cancel`."""
        if self._checkout is None:
            cancel.wait()
            return None
        return self._checkout.next_code(cancel)

    def pay_cash(self, amount: Money, tendered: Money, *, operator: str | None,
                 details: Mapping[str, Any] | None = None) -> TxnRow:
        """Journal a cash tender (`tendered` for `amount`, the change recorded)."""
        return self.backoffice.pay_cash(amount, tendered, operator=operator, details=details)

    def pin_binding(self) -> tuple[bytes, dict[str, Any]] | None:
        """The backend's sealing key and what the customer's PIN is bound to, for the PIN pad; None
        when no payment waits for a PIN or the terminal is not enrolled."""
        return self._checkout.pin_binding() if self._checkout is not None else None

    def retry_with_pin_block(self, cancel: threading.Event, pin_block: str) -> CheckoutResult:
        """Decide the payment that waited for the customer's PIN, with the PIN block the PIN pad sealed."""
        return self._require_checkout().retry_with_pin_block(cancel, pin_block)

    def drop_pending_pin(self) -> None:
        if self._checkout is not None:
            self._checkout.drop_pending_pin()

    def save_receipt(self, row: TxnRow, locale: str | None = None) -> Path:
        return self.backoffice.save_receipt(row, locale)
