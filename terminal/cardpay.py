"""Paying with a contactless card or phone: the thin shell around the pure EMV kernel.

`prepare_card_payment` runs the kernel (`terminal.core.emv`) on a card session with the terminal
data from config (amount, currency, country, reader limits for the TTQ, the accepted AIDs), a fresh
unpredictable number and the terminal's keys: the card number becomes the keyed card token and the
masked PAN at once, and is sealed for the backend when the terminal is enrolled. The clear number is
never returned, stored or logged.

`pay_card` then lets `Service.pay` decide (rules, online when needed) and journal the outcome. A card
that cannot be read (removed, unreadable, blocked, no supported application) is a `CardPayResult`
with an outcome the screen shows ("tap again", "try another card") and nothing journaled — no
payment was attempted with a known payer.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.base import CardRemovedError, ReaderUnavailableError
from terminal.config import Config
from terminal.core import emv
from terminal.core.emv import ApduTransport
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.errors import CardError, SecurityError, StorageError, TlvError
from terminal.payment import CardFacts, PaymentResult
from terminal.payments import Payments
from terminal.security import mask_pan, seal_for_backend
from terminal.tapstore import READ_FAILURES, TRACES_DIR, FailedTaps, RecordingTransport, TapCheck

log = logging.getLogger("walletpos.cardpay")


def supported_aids(config: Config) -> tuple[emv.SupportedAid, ...]:
    """The built-in schemes plus the AIDs from [reader] extra_aids (the wallet's own)."""
    extra = tuple(emv.SupportedAid(bytes.fromhex(aid), scheme, scheme) for aid, scheme in
                  config.reader.aid_map.items())
    return extra + emv.DEFAULT_AIDS


def terminal_params(payments: Payments, aids: tuple[emv.SupportedAid, ...], amount: Money, *,
                    transaction_type: int = 0x00, unpredictable_number: bytes | None = None) -> emv.TerminalParams:
    cfg = payments.config
    return emv.TerminalParams(
        amount=amount.minor,
        currency_numeric=amount.currency.numeric,
        country_numeric=cfg.terminal.country_code,
        when=payments.clock().astimezone(payments.zone),
        unpredictable_number=unpredictable_number or os.urandom(4),
        transaction_type=transaction_type,
        floor_limit=cfg.limits.floor_limit.minor,
        cvm_required_limit=cfg.limits.cvm_required_limit.minor,
        online_capable=cfg.reader.online_capable and cfg.backend.enabled,
        terminal_type=cfg.reader.terminal_type,
        merchant_name=cfg.terminal.merchant_name,
        aids=aids,
    )


@dataclass(frozen=True)
class CardPayment:
    """What a card asks to pay: the kernel's read, the request for the rules, the journal facts."""

    read: emv.CardRead
    request: PaymentRequest
    facts: CardFacts


def _tokenizer(payments: Payments) -> Callable[[str], str]:
    """The keyed card token of a card number (a number the keys refuse: try another card)."""
    keys = payments.storage.require_keys()

    def tokenize(pan: str) -> str:
        try:
            return keys.card_token(pan)
        except SecurityError:
            raise CardError("the card number on the card is not valid; try another card",
                            outcome="try_another_card") from None

    return tokenize


def _sealer(payments: Payments) -> Callable[[bytes], str] | None:
    key = payments.sealing_key()
    if key is None:
        return None
    return lambda payload: seal_for_backend(key, payload)


class CardPayments:
    """Card payments on this terminal: the kernel with the terminal's data and accepted AIDs."""

    def __init__(self, payments: Payments) -> None:
        self.payments = payments
        self.aids = supported_aids(payments.config)
        self.failed_taps = FailedTaps(payments.data_dir / TRACES_DIR, payments.config.terminal.id)

    def prepare(self, transport: ApduTransport, amount: Money) -> CardPayment:
        recorder = RecordingTransport(transport)
        try:
            return prepare_card_payment(self.payments, self.aids, recorder, amount)
        except CardError as exc:
            self._keep_failed(recorder, exc.outcome, exc.message, amount, "payment",
                              reader=str(getattr(transport, "reader_name", "") or ""))
            raise

    def pay(self, transport: ApduTransport, amount: Money, *, operator: str | None = None,
            started: float | None = None) -> CardPayResult:
        recorder = RecordingTransport(transport)
        result = pay_card(self.payments, self.aids, recorder, amount, operator=operator, started=started)
        if result.read is None and result.outcome in READ_FAILURES:
            self._keep_failed(recorder, result.outcome, result.message, amount, "payment",
                              reader=str(getattr(transport, "reader_name", "") or ""))
        return result

    def check_tap(self, transport: ApduTransport, amount: Money, *, reader: str = "", source: str = "card",
                  started: float | None = None) -> TapCheck:
        """The technician's test tap (or a replay): the kernel reads the card and nothing is journaled,
        sealed or sent; a card that cannot be read is kept as a failed tap like a payment's."""
        t0 = started if started is not None else time.perf_counter()
        recorder = RecordingTransport(transport)
        atr = recorder.atr.hex().upper() if recorder.atr else None
        try:
            read = read_card_only(self.payments, self.aids, recorder, amount)
        except CardError as exc:
            message = exc.message
            if isinstance(exc, TlvError):
                message = f"the card's answer is malformed ({exc.message}); try another card"
            saved = None
            if source == "card":
                saved = self._keep_failed(recorder, exc.outcome, message, amount, "test tap", reader=reader)
            return TapCheck(exc.outcome, message, reader, None, tuple(recorder.exchanges), atr,
                            (time.perf_counter() - t0) * 1000, saved, source)
        except ReaderUnavailableError as exc:
            return TapCheck("reader_unavailable", exc.message, reader, None, tuple(recorder.exchanges), atr,
                            (time.perf_counter() - t0) * 1000, None, source)
        except StorageError as exc:
            return TapCheck("storage", exc.message, reader, None, tuple(recorder.exchanges), atr,
                            (time.perf_counter() - t0) * 1000, None, source)
        return TapCheck("read", f"{read.scheme} {read.masked_pan} read in {read.apdu_count} commands", reader, read,
                        tuple(recorder.exchanges), atr, (time.perf_counter() - t0) * 1000, None, source)

    def _keep_failed(self, recorder: RecordingTransport, outcome: str, message: str, amount: Money, origin: str,
                     *, reader: str = "") -> str | None:
        return self.failed_taps.save(recorder.exchanges, outcome=outcome, message=message,
                                     now=self.payments.clock(), origin=origin, reader=reader, atr=recorder.atr,
                                     details={"amount": amount.minor, "currency": amount.currency.alpha})


def prepare_card_payment(payments: Payments, aids: tuple[emv.SupportedAid, ...], transport: ApduTransport,
                         amount: Money) -> CardPayment:
    """Run the kernel and turn its read into a payment request. Raises CardError (and whatever the
    transport raises: CardRemovedError, ReaderUnavailableError) when the card cannot be read."""
    read = emv.read_card(transport, terminal_params(payments, aids, amount), tokenize=_tokenizer(payments),
                         mask=mask_pan, seal=_sealer(payments))
    details: dict[str, Any] = {
        "aid": read.aid, "label": read.label, "cid": read.cid, "atc": read.atc, "cryptogram": read.cryptogram,
        "iad": read.iad, "ctq": read.ctq, "aip": read.aip, "cvm": read.cvm, "apdu_count": read.apdu_count,
    }
    facts = CardFacts(scheme=read.scheme, card_token=read.card_token, masked_pan=read.masked_pan,
                      sealed_card=read.sealed_card, details={k: v for k, v in details.items() if v is not None})
    request = PaymentRequest(amount=amount, method=Method.CARD, card_token=read.card_token, expiry=read.expiry,
                             cvm_performed=read.cdcvm_performed, card_declined=read.cid == "AAC")
    return CardPayment(read, request, facts)


def read_card_only(payments: Payments, aids: tuple[emv.SupportedAid, ...], transport: ApduTransport,
                   amount: Money) -> emv.CardRead:
    """The kernel alone, for a test tap: the card number becomes the token and the masked PAN, nothing
    is sealed. Raises as `prepare_card_payment` does."""
    return emv.read_card(transport, terminal_params(payments, aids, amount), tokenize=_tokenizer(payments),
                         mask=mask_pan)


@dataclass(frozen=True)
class CardPayResult:
    """One tap. `outcome`: approved, declined, need_cvm, or — nothing journaled — tap_again,
    try_another_card, card_blocked, app_not_supported, card_error, reader_unavailable, storage."""

    outcome: str
    reasons: tuple[str, ...]
    message: str
    payment: PaymentResult | None = None
    read: emv.CardRead | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    card: CardPayment | None = None

    def to_dict(self) -> dict[str, Any]:
        row = self.payment.row if self.payment else None
        return {
            "outcome": self.outcome,
            "decision": row.decision if row else ("need_cvm" if self.outcome == "need_cvm" else "not_read"
                                                  if self.read is None else self.outcome),
            "reasons": list(self.reasons),
            "message": self.message,
            "auth_mode": self.payment.auth_mode if self.payment else "none",
            "transaction_id": row.id if row else None,
            "sequence": row.seq if row else None,
            "scheme": self.read.scheme if self.read else None,
            "aid": self.read.aid if self.read else None,
            "masked_pan": self.read.masked_pan if self.read else None,
            "expiry": self.read.expiry.isoformat() if self.read and self.read.expiry else None,
            "cid": self.read.cid if self.read else None,
            "cvm": self.read.cvm if self.read else None,
            "apdu_count": self.read.apdu_count if self.read else None,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "apdu_trace": [t.to_dict() for t in self.read.trace] if self.read else [],
        }


def pay_card(payments: Payments, aids: tuple[emv.SupportedAid, ...], transport: ApduTransport, amount: Money, *,
             operator: str | None = None, started: float | None = None) -> CardPayResult:
    """Read the card, decide and journal (see the module docstring). `started` is when the card
    was detected (perf_counter), so the timings run from card present to durable journal row."""
    t0 = started if started is not None else time.perf_counter()
    try:
        card = prepare_card_payment(payments, aids, transport, amount)
    except CardRemovedError as exc:
        return CardPayResult("tap_again", ("card_removed",), exc.message,
                             timings_ms={"total": (time.perf_counter() - t0) * 1000})
    except ReaderUnavailableError as exc:
        return CardPayResult("reader_unavailable", ("reader_unavailable",), exc.message,
                             timings_ms={"total": (time.perf_counter() - t0) * 1000})
    except CardError as exc:
        log.info("card not read: %s (%s)", exc.message, exc.outcome)
        message = exc.message
        if isinstance(exc, TlvError):
            message = f"the card's answer is malformed ({exc.message}); try another card"
        return CardPayResult(exc.outcome, (exc.outcome,), message,
                             timings_ms={"total": (time.perf_counter() - t0) * 1000})
    except StorageError as exc:
        return CardPayResult("storage", ("storage_failure",), exc.message,
                             timings_ms={"total": (time.perf_counter() - t0) * 1000})
    t_kernel = (time.perf_counter() - t0) * 1000
    result = payments.pay(card.request, card.facts, operator=operator, started=t0)
    timings = {"card": round(t_kernel, 3), **dict(result.timings_ms)}
    if "rules" in timings:  # Service.pay times the rules from `started`: keep only their own share
        timings["rules"] = max(0.0, timings["rules"] - t_kernel)
    return CardPayResult(result.outcome, tuple(result.reasons), result.message, result, card.read, timings, card)
