"""Paying with a code the customer shows, and the code the terminal shows.

`prepare_code_payment` turns a scanned text into what `Service.pay` needs, or refuses it with a
`QrPayloadError`:
- EMVCo consumer code (CPM) -> `Method.QR_CPM`: the card number is turned into the card token and the
  masked PAN at once, and sealed for the backend with the other card data (never stored or shown
  in clear); the expiry comes from the code.
- signed wallet code -> `Method.WALLET_SIGNED`: verified offline (issuer key from config or from the
  backend, signature, time window, per-code cap); the wallet's tier goes to the rules; the code is
  claimed (wallet, counter) in the same journal transaction as the approval, so it pays once.
- numeric wallet code -> `Method.WALLET_NUMERIC`: only the backend can resolve it (the rules send it
  online; offline it is declined). The digits go to the backend sealed, never in clear.
- merchant code (MPM) and anything else: refused, nothing is paid.

`pay_code` runs the whole flow. A signed wallet code that fails verification (unknown key, bad
signature, expired, not yet valid, over its cap, already used) is declined and the decline is
journaled with its own reason, so refused codes leave a trace the backend sees; a text that is not
a payment code at all is only refused.

Wallet codes are paid by wallet, not by card: their `card_token` (velocity, deny list) is the keyed
token of the wallet id (`security.wallet_token`), of the same form as a card token.

`merchant_qr` builds the dynamic merchant code the customer scans with the wallet app; its 62/05
reference is the transaction id of the payment it asks for, written in 25 base-36 characters
(`reference_of` / `txn_id_of_reference` convert both ways).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from terminal.backend import BackendError, BackendRefused, NotEnrolled, PaymentStatus
from terminal.core import qrpay
from terminal.core.money import Money
from terminal.core.qrpay import CodeKind, Why
from terminal.core.rules import Method, PaymentRequest
from terminal.errors import QrPayloadError, SecurityError, StorageError, WalletposError
from terminal.journal import CodeClaim, NewTransaction, TxnRow
from terminal.journal.ids import new_txn_id
from terminal.payment import CardFacts, PaymentResult
from terminal.payments import Payments
from terminal.security import mask_pan, seal_for_backend

log = logging.getLogger("walletpos.codepay")

# Refusals of a signed code that are journaled as declines (the code was a payment attempt).
JOURNALED_REFUSALS = frozenset({
    Why.UNKNOWN_KEY.value, Why.BAD_SIGNATURE.value, Why.EXPIRED.value, Why.NOT_YET_VALID.value,
    Why.CAP_EXCEEDED.value, Why.CAP_CURRENCY.value, "code_already_used",
})

_SCHEMES = {"A000000333": "unionpay", "A000000003": "visa", "A000000004": "mastercard", "A000000025": "amex",
            "A000000065": "jcb", "A000000152": "discover", "A000000602": "qris"}


@dataclass(frozen=True)
class CodePayment:
    """What a scanned code asks to pay: the request for the rules, the facts for the journal, and
    the single-use claim of a signed wallet code."""

    kind: CodeKind
    request: PaymentRequest
    facts: CardFacts
    claim: CodeClaim | None = None


@dataclass(frozen=True)
class CodePayResult:
    kind: str
    outcome: str  # approved | declined | need_cvm | refused (not a usable payment code; nothing recorded)
    reasons: tuple[str, ...]
    message: str
    payment: PaymentResult | None = None
    transaction_id: str | None = None
    masked_pan: str | None = None

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "outcome": self.outcome, "approved": self.approved,
                               "reasons": list(self.reasons), "message": self.message,
                               "transaction_id": self.transaction_id, "masked_pan": self.masked_pan}
        if self.payment is not None:
            out["auth_mode"] = self.payment.auth_mode
            out["seq"] = self.payment.row.seq if self.payment.row else None
        return out


def issuer_keys(payments: Payments) -> dict[str, bytes]:
    """Issuer keys the terminal trusts: delivered by the backend, and those in config (config wins
    when both name the same key id differently)."""
    keys: dict[str, bytes] = {}
    if payments.journal is not None:
        keys.update(payments.journal.issuer_keys.all())
    configured = payments.config.qr.issuer_key_map
    for key_id, key in configured.items():
        if key_id in keys and keys[key_id] != key:
            log.warning("issuer key %s from the backend differs from config; using config", key_id)
    keys.update(configured)
    return keys


def _seal(payments: Payments, payload: Mapping[str, Any]) -> str | None:
    key = payments.sealing_key()
    if key is None:
        return None
    return seal_for_backend(key, json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def _scheme(aid: str | None) -> str:
    return _SCHEMES.get((aid or "")[:10].upper(), "emv")


def _cpm(payments: Payments, code: qrpay.ConsumerPresentedCode, amount: Money) -> CodePayment:
    app = code.application
    pan = app.pan
    if not pan:
        raise QrPayloadError("the consumer code carries no card number (5A or 57)", reason="no_card_number")
    keys = payments.storage.require_keys()
    try:
        token, masked = keys.card_token(pan), mask_pan(pan)
    except SecurityError:
        raise QrPayloadError("the card number in the consumer code is not valid", reason="bad_card_number") from None
    v = app.values
    cid = cryptogram_type(v)
    sealed = _seal(payments, {"pan": pan, "track2": v.get("track2"), "expiry": v.get("expiry"),
                         "pan_sequence": v.get("pan_sequence")})
    public = {k: v[k] for k in ("cryptogram", "cid", "atc", "unpredictable_number", "iad", "aip") if k in v}
    facts = CardFacts(scheme=_scheme(app.aid), card_token=token, masked_pan=masked, sealed_card=sealed,
                      details={"code_kind": CodeKind.CPM.value, "aid": app.aid, **public})
    # an AAC is the card declining: journaled as a decline; an ARQC (or a TC) goes to the issuer (CPM is
    # online-only: `terminal.core.rules.ONLINE_ONLY_METHODS`), which checks the cryptogram
    request = PaymentRequest(amount=amount, method=Method.QR_CPM, card_token=token, expiry=app.expiry,
                             card_declined=cid == "AAC")
    return CodePayment(CodeKind.CPM, request, facts)


CID_TYPES = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}


def cryptogram_type(values: Mapping[str, str]) -> str:
    """What the code's application cryptogram says (AAC, TC, ARQC) after checking that it has one: a
    consumer code without an 8-byte cryptogram (9F26, not all zeros), its information data (9F27) and
    its transaction counter (9F36) is not a payment the issuer could check; it is refused."""
    cryptogram, cid, atc = values.get("cryptogram"), values.get("cid"), values.get("atc")
    if not cryptogram or len(cryptogram) != 16 or set(cryptogram) <= {"0"}:
        raise QrPayloadError("the consumer code carries no application cryptogram (9F26): the issuer could not "
                             "check it", reason="no_cryptogram")
    if not cid or len(cid) != 2 or not atc or len(atc) != 4:
        raise QrPayloadError("the consumer code lacks its cryptogram information (9F27) or counter (9F36)",
                             reason="no_cryptogram")
    kind = CID_TYPES.get(int(cid, 16) & 0xC0)
    if kind is None:
        raise QrPayloadError(f"the consumer code's cryptogram type {cid} is not AAC, TC or ARQC",
                             reason="no_cryptogram")
    return kind


def wallet_token(payments: Payments, wallet_id: str) -> str:
    return payments.storage.require_keys().wallet_token(wallet_id)


def _signed(payments: Payments, code: qrpay.SignedWalletCode, amount: Money) -> CodePayment:
    verified = qrpay.verify_wallet_code(code, now=payments.clock(), issuer_keys=issuer_keys(payments),
                                        amount=amount, clock_skew_seconds=payments.config.qr.clock_skew_seconds)
    token = wallet_token(payments, code.wallet_id)
    facts = CardFacts(scheme="wallet", card_token=token, details={
        "code_kind": CodeKind.WALLET_SIGNED.value, "wallet_id": code.wallet_id, "wallet_tier": code.tier.value,
        "code_counter": code.counter, "key_id": code.key_id,
        "code_expires_at": verified.expires.strftime("%Y-%m-%dT%H:%M:%SZ")})
    request = PaymentRequest(amount=amount, method=Method.WALLET_SIGNED, card_token=token, wallet_tier=code.tier)
    return CodePayment(CodeKind.WALLET_SIGNED, request, facts, CodeClaim(code.wallet_id, code.counter, code.key_id))


def _numeric(payments: Payments, code: qrpay.NumericWalletCode, amount: Money) -> CodePayment:
    facts = CardFacts(scheme="wallet", sealed_card=_seal(payments, {"wallet_code": code.digits}),
                      details={"code_kind": CodeKind.WALLET_NUMERIC.value, "wallet_code_masked": code.masked})
    return CodePayment(CodeKind.WALLET_NUMERIC, PaymentRequest(amount=amount, method=Method.WALLET_NUMERIC), facts)


def prepare_code_payment(payments: Payments, text: str, amount: Money) -> CodePayment:
    """The payment a scanned text asks for, or `QrPayloadError` saying why it cannot pay."""
    code = qrpay.classify(text, payments.config.qr.numeric_prefixes)
    if isinstance(code, qrpay.ConsumerPresentedCode):
        return _cpm(payments, code, amount)
    if isinstance(code, qrpay.SignedWalletCode):
        return _signed(payments, code, amount)
    if isinstance(code, qrpay.NumericWalletCode):
        return _numeric(payments, code, amount)
    if isinstance(code, qrpay.MerchantPresentedCode):
        raise QrPayloadError("this is a merchant's payment code: the customer scans it with the wallet app; "
                             "the terminal cannot pay with it", reason="merchant_code")
    raise QrPayloadError(f"not a payment code: {code.description}", reason=Why.NOT_A_PAYMENT_CODE.value)


def _decline_signed(payments: Payments, text: str, amount: Money, reason: str, message: str,
                    operator: str | None) -> CodePayResult:
    """Journal the decline of a signed wallet code that failed verification or was used before."""
    try:
        code = qrpay.parse_wallet_code(text)
        details: dict[str, Any] = {"code_kind": CodeKind.WALLET_SIGNED.value, "code_problem": reason,
                                   "key_id": code.key_id, "claimed_wallet_id": code.wallet_id,
                                   "code_counter": code.counter}
    except QrPayloadError:
        details = {"code_kind": CodeKind.WALLET_SIGNED.value, "code_problem": reason}
    journal = payments.require_journal()
    row = journal.txns.append(
        NewTransaction(kind="sale", amount=amount, method=Method.WALLET_SIGNED.value, decision="declined",
                       reasons=(reason,), auth_mode="none", scheme="wallet", operator=operator, details=details),
        now=payments.clock(), business_date=payments.business_date())
    log.info("wallet code refused seq=%d reason=%s", row.seq, reason)
    return CodePayResult(CodeKind.WALLET_SIGNED.value, "declined", (reason,), f"Declined: {message}.",
                         transaction_id=row.id)


def journal_refusal(payments: Payments, text: str, amount: Money, exc: QrPayloadError, *,
                    operator: str | None = None) -> CodePayResult | None:
    """Journal the refusal `exc` of `text` as a declined payment when it is the refusal of a signed
    wallet code (a payment attempt the backend should see); None when nothing is journaled. For a
    checkout that calls `prepare_code_payment` itself."""
    kind = qrpay.kind_of(text, payments.config.qr.numeric_prefixes) if isinstance(text, str) else CodeKind.OTHER
    if kind is CodeKind.WALLET_SIGNED and exc.reason in JOURNALED_REFUSALS:
        return _decline_signed(payments, text, amount, exc.reason, exc.message, operator)
    return None


def pay_code(payments: Payments, text: str, amount: Money, *, operator: str | None = None) -> CodePayResult:
    """Decide and journal a payment with a scanned code (see the module docstring)."""
    kind = qrpay.kind_of(text, payments.config.qr.numeric_prefixes) if isinstance(text, str) else CodeKind.OTHER
    try:
        try:
            payment = prepare_code_payment(payments, text, amount)
        except QrPayloadError as exc:
            declined = journal_refusal(payments, text, amount, exc, operator=operator)
            return declined or CodePayResult(kind.value, "refused", (exc.reason,), exc.message)
        claim = payment.claim
        journal = payments.journal
        if claim is not None and journal is not None and journal.issuer_keys.code_used(claim.wallet_id, claim.counter):
            return _decline_signed(payments, text, amount, "code_already_used", "this payment code was already used",
                                   operator)
    except StorageError as exc:  # the journal cannot record: nothing is approved (fail closed)
        log.error("code payment refused, cannot record: %s", exc.message)
        return CodePayResult(kind.value, "declined", ("storage_failure",),
                             f"Not approved: the terminal cannot record payments ({exc.message}).")
    result = payments.pay(payment.request, payment.facts, operator=operator, claim=claim)
    return CodePayResult(payment.kind.value, result.outcome, tuple(result.reasons), result.message, result,
                         result.row.id if result.row else None, payment.facts.masked_pan)


# ------------------------------------------------------------------------------------------------
# the terminal's own (merchant-presented) code


def reference_of(txn_id: str) -> str:
    """A transaction id (UUID) as the 25-character base-36 reference of a merchant code (62/05)."""
    value = uuid.UUID(txn_id).int
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for _ in range(25):
        value, rem = divmod(value, 36)
        out.append(digits[rem])
    return "".join(reversed(out))


def txn_id_of_reference(reference: str) -> str:
    """The transaction id a merchant-code reference stands for (inverse of `reference_of`)."""
    if len(reference) != 25 or not reference.isalnum() or not reference.isascii():
        raise QrPayloadError("a walletpos reference is 25 letters and digits", reason=Why.INVALID_FIELD.value)
    value = int(reference, 36)
    if value >= 2**128:
        raise QrPayloadError("not a walletpos reference", reason=Why.INVALID_FIELD.value)
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class MerchantQr:
    payload: str
    amount: Money
    reference: str
    transaction_id: str
    created_at: datetime
    valid_until: datetime  # closed at the backend then if no screen closed it before

    def to_dict(self) -> dict[str, Any]:
        return {"payload": self.payload, "amount": self.amount.minor, "currency": self.amount.currency.alpha,
                "amount_text": self.amount.plain(), "reference": self.reference,
                "transaction_id": self.transaction_id,
                "created_at": self.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "valid_until": self.valid_until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


class MerchantCodeUnavailable(WalletposError):
    """The terminal's merchant code cannot be shown: the backend must know it first (offline, or the
    backend refused it). Nothing is journaled as a sale."""

    title = "Merchant QR needs the network"


class MerchantCodeBackend(Protocol):
    """What merchant codes need from the backend (implemented by `terminal.backend.BackendClient`)."""

    def register_payment(self, reference: str, amount: int, currency: str, valid_until: str) -> PaymentStatus: ...

    def payment_status(self, reference: str) -> PaymentStatus: ...

    def cancel_payment(self, reference: str, reason: str = "closed_by_cashier") -> PaymentStatus: ...


class MerchantCodes:
    """The terminal's own (merchant-presented) codes: made, watched while on a screen, recorded when
    paid, closed at the backend when they leave the screen unpaid, and settled by the sync worker
    when no screen watches them any more."""

    def __init__(self, payments: Payments, backend: MerchantCodeBackend | None) -> None:
        self.payments = payments
        self.backend = backend
        self._on_screen: set[str] = set()  # references a screen is watching
        self._details: dict[str, Mapping[str, Any]] = {}  # the sale's items of a code on screen, by reference
        self._lock = threading.Lock()

    @property
    def lifetime(self) -> timedelta:
        """How long a merchant code no screen watches stays payable (`qr.merchant_code_minutes`)."""
        return timedelta(minutes=self.payments.config.qr.merchant_code_minutes)

    def _backend(self) -> MerchantCodeBackend:
        if self.backend is None:
            raise NotEnrolled("the backend is switched off ([backend] enabled = false)")
        return self.backend

    def status(self, reference: str) -> PaymentStatus:
        """Has the customer paid the code with this reference?"""
        return self._backend().payment_status(reference)

    def cancel(self, reference: str, reason: str = "closed_by_cashier") -> PaymentStatus:
        """Close a code at the backend (`cancelled`, or `paid` when the customer paid first)."""
        return self._backend().cancel_payment(reference, reason)

    def watch(self, reference: str, shown: bool) -> None:
        """A screen starts (True) or stops (False) watching the code `reference`: codes on screen are
        left to it; the others are settled by the sync worker (`settle`)."""
        with self._lock:
            (self._on_screen.add if shown else self._on_screen.discard)(reference)

    def create(self, amount: Money, txn_id: str | None = None, *, operator: str | None = None,
               on_screen: bool = False, details: Mapping[str, Any] | None = None) -> MerchantQr:
        """The dynamic merchant code for one payment of `amount` (the customer scans it and pays in
        the app).

        The code is in the journal (open) before anyone can see it: whatever becomes of it (paid
        while on screen, paid after the screen closed, the terminal restarted), the sync worker can
        find it, close it at the backend and record a payment made with it (`settle`). With
        `on_screen` the caller watches it (`Checkout.wait_merchant_qr`) and closes it when done."""
        payments = self.payments
        txn_id = txn_id or new_txn_id()
        payload, reference = self.payload(amount, txn_id)
        backend = self._backend()
        if on_screen:
            self.watch(reference, True)
        now = payments.clock()
        valid_until = now + self.lifetime
        journal = payments.require_journal()
        try:
            journal.merchant_codes.open(reference, txn_id, amount, operator, now=now)
        except StorageError:
            self.watch(reference, False)
            raise
        try:  # the backend records this terminal as the code's owner before anyone can scan it
            backend.register_payment(reference, amount.minor, amount.currency.alpha,
                                     valid_until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        except WalletposError as exc:
            self.watch(reference, False)
            journal.merchant_codes.close(reference, "not_registered", now=now)
            raise MerchantCodeUnavailable(
                f"the backend could not be told about the code, so it is not shown ({exc.message}); take a card "
                "or a code the customer shows, or try the QR again when the network is back") from None
        if details:  # kept while this process lives: a code settled after a restart is journaled without them
            with self._lock:
                self._details[reference] = dict(details)
        return MerchantQr(payload, amount, reference, txn_id, now, valid_until)

    def payload(self, amount: Money, txn_id: str) -> tuple[str, str]:
        """The EMVCo merchant-presented payload of a payment of `amount` with transaction `txn_id`, and its
        62/05 reference (pure: nothing is recorded or registered)."""
        payments = self.payments
        if amount.currency != payments.currency or not amount.is_positive:
            raise QrPayloadError(f"a merchant code is for a positive amount in {payments.currency.alpha}",
                                 reason=Why.INVALID_FIELD.value)
        t = payments.config.terminal
        q = payments.config.qr
        reference = reference_of(txn_id)
        payload = qrpay.dynamic_mpm(
            merchant_account=(f"{q.merchant_account_id:02d}", [("00", q.merchant_account_guid),
                                                                ("01", t.merchant_id)]),
            mcc=t.merchant_category_code, amount=amount, country=t.country, merchant_name=t.merchant_name,
            merchant_city=t.merchant_city, reference=reference, terminal_label=t.id)
        return payload, reference

    def record_outcome(self, reference: str, txn_id: str, amount: Money, status: PaymentStatus,
                       operator: str | None) -> TxnRow:
        """Journal what the backend says became of a merchant code (paid, paid another amount,
        cancelled by the customer in the app) and close the code. Idempotent: when the transaction is
        already in the journal it is returned, not written again."""
        payments = self.payments
        journal = payments.require_journal()
        row = journal.txns.get(txn_id)
        if row is None:
            paid = status.status == "paid"
            matches = status.amount in (None, amount.minor) and status.currency in (None, amount.currency.alpha)
            approved = paid and matches
            reasons = ("paid_in_wallet_app",) if approved else (("amount_mismatch",) if paid
                                                                 else ("payment_cancelled",))
            if paid and not matches:
                log.error("merchant code %s paid %s %s, expected %s", reference, status.amount, status.currency,
                          amount)
            row = journal.txns.append(
                NewTransaction(kind="sale", amount=amount, method="merchant_qr",
                               decision="approved" if approved else "declined", reasons=reasons, auth_mode="online",
                               scheme="wallet", card_token=status.card_token, operator=operator, id=txn_id,
                               details={**self._sale_details(reference), "reference": reference,
                                        "paid_amount": status.amount}),
                now=payments.clock(), business_date=payments.business_date())
        journal.merchant_codes.close(reference, "paid" if row.approved else row.reasons[0], now=payments.clock())
        return row

    def _sale_details(self, reference: str) -> Mapping[str, Any]:
        with self._lock:
            return self._details.pop(reference, {})

    def close(self, reference: str, txn_id: str, amount: Money, operator: str | None, *,
              reason: str = "closed_by_cashier") -> TxnRow | None:
        """Close a merchant code at the backend so that it can no longer be paid. Returns the sale row
        when the customer had paid it first (journaled now if it was not yet), None when it closed
        unpaid. Raises `WalletposError` when the backend does not answer: the code stays open, marked
        for closing, and the sync worker closes it when the backend answers again."""
        journal = self.payments.require_journal()
        journal.merchant_codes.request_close(reference)
        status = self.cancel(reference, reason)
        if status.status == "paid":
            return self.record_outcome(reference, txn_id, amount, status, operator)
        journal.merchant_codes.close(reference, "closed", now=self.payments.clock())
        self._sale_details(reference)
        return None

    def settle(self) -> list[TxnRow]:
        """Merchant codes still open that no screen watches: record a payment made with one, close the
        ones whose cashier gave up (or older than `qr.merchant_code_minutes`) at the backend. Returns
        the rows journaled. Backend errors propagate (the caller tries again at its next cycle)."""
        journal = self.payments.require_journal()
        with self._lock:
            on_screen = set(self._on_screen)
        rows: list[TxnRow] = []
        failure: BackendError | None = None
        now = self.payments.clock()
        for code in journal.merchant_codes.still_open():
            reference = code["reference"]
            if reference in on_screen:
                continue
            args = (reference, code["txn_id"], code["amount"])
            try:  # one code the backend cannot settle now does not hold up the others
                if code["close_requested"] or now - code["shown_at"] >= self.lifetime:
                    row = self.close(*args, code["operator"], reason="closed_by_terminal")
                else:
                    status = self.status(reference)
                    row = None if status.status == "pending" else self.record_outcome(*args, status, code["operator"])
            except BackendRefused as exc:
                if exc.code != "payment_not_found":
                    failure = failure or exc
                    continue
                # the backend never knew this code (it was never registered, or not with this terminal): it
                # cannot have been paid through the backend; close it here
                log.warning("merchant code %s is unknown to the backend: closed here", reference)
                journal.merchant_codes.close(reference, "unknown_to_backend", now=now)
                continue
            except BackendError as exc:
                failure = failure or exc
                continue
            if row is not None:
                log.warning("merchant code %s: %s %s after it left the screen (transaction %s)", reference,
                            "paid" if row.approved else "ended", row.amount, row.id)
                rows.append(row)
        if failure is not None and not rows:
            raise failure
        if failure is not None:
            log.warning("some merchant codes not settled yet: %s", failure.message)
        return rows
