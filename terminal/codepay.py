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
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from terminal.core import qrpay
from terminal.core.money import Money
from terminal.core.qrpay import CodeKind, Why
from terminal.core.rules import Method, PaymentRequest
from terminal.errors import QrPayloadError, SecurityError, StorageError
from terminal.journal import CodeClaim, NewTransaction, TxnRow, new_txn_id
from terminal.security import mask_pan, seal_for_backend

if TYPE_CHECKING:
    from terminal.backend import PaymentStatus
    from terminal.service import CardFacts, PaymentResult, Service

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


def issuer_keys(svc: Service) -> dict[str, bytes]:
    """Issuer keys the terminal trusts: delivered by the backend, and those in config (config wins
    when both name the same key id differently)."""
    keys: dict[str, bytes] = {}
    if svc.journal is not None:
        keys.update(svc.journal.issuer_keys())
    configured = svc.config.qr.issuer_key_map
    for key_id, key in configured.items():
        if key_id in keys and keys[key_id] != key:
            log.warning("issuer key %s from the backend differs from config; using config", key_id)
    keys.update(configured)
    return keys


def _sealing_key(svc: Service) -> bytes | None:
    """The backend's sealing key, once the backend side of the service offers one."""
    getter = getattr(svc, "backend_sealing_key", None)
    return getter() if callable(getter) else None


def _seal(svc: Service, payload: Mapping[str, Any]) -> str | None:
    key = _sealing_key(svc)
    if key is None:
        return None
    return seal_for_backend(key, json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def _scheme(aid: str | None) -> str:
    return _SCHEMES.get((aid or "")[:10].upper(), "emv")


def _cpm(svc: Service, code: qrpay.ConsumerPresentedCode, amount: Money) -> CodePayment:
    from terminal.service import CardFacts

    app = code.application
    pan = app.pan
    if not pan:
        raise QrPayloadError("the consumer code carries no card number (5A or 57)", reason="no_card_number")
    keys = svc.keys
    if keys is None:
        raise StorageError(svc.storage_problem or "the terminal keys are not available", title="Cannot record")
    try:
        token, masked = keys.card_token(pan), mask_pan(pan)
    except SecurityError:
        raise QrPayloadError("the card number in the consumer code is not valid", reason="bad_card_number") from None
    v = app.values
    sealed = _seal(svc, {"pan": pan, "track2": v.get("track2"), "expiry": v.get("expiry"),
                         "pan_sequence": v.get("pan_sequence")})
    public = {k: v[k] for k in ("cryptogram", "cid", "atc", "unpredictable_number", "iad", "aip") if k in v}
    facts = CardFacts(scheme=_scheme(app.aid), card_token=token, masked_pan=masked, sealed_card=sealed,
                      details={"code_kind": CodeKind.CPM.value, "aid": app.aid, **public})
    request = PaymentRequest(amount=amount, method=Method.QR_CPM, card_token=token, expiry=app.expiry)
    return CodePayment(CodeKind.CPM, request, facts)


def wallet_token(svc: Service, wallet_id: str) -> str:
    if svc.keys is None:
        raise StorageError(svc.storage_problem or "the terminal keys are not available")
    return svc.keys.wallet_token(wallet_id)


def _signed(svc: Service, code: qrpay.SignedWalletCode, amount: Money) -> CodePayment:
    from terminal.service import CardFacts

    verified = qrpay.verify_wallet_code(code, now=svc.clock(), issuer_keys=issuer_keys(svc), amount=amount,
                                        clock_skew_seconds=svc.config.qr.clock_skew_seconds)
    token = wallet_token(svc, code.wallet_id)
    facts = CardFacts(scheme="wallet", card_token=token, details={
        "code_kind": CodeKind.WALLET_SIGNED.value, "wallet_id": code.wallet_id, "wallet_tier": code.tier.value,
        "code_counter": code.counter, "key_id": code.key_id,
        "code_expires_at": verified.expires.strftime("%Y-%m-%dT%H:%M:%SZ")})
    request = PaymentRequest(amount=amount, method=Method.WALLET_SIGNED, card_token=token, wallet_tier=code.tier)
    return CodePayment(CodeKind.WALLET_SIGNED, request, facts, CodeClaim(code.wallet_id, code.counter, code.key_id))


def _numeric(svc: Service, code: qrpay.NumericWalletCode, amount: Money) -> CodePayment:
    from terminal.service import CardFacts

    facts = CardFacts(scheme="wallet", sealed_card=_seal(svc, {"wallet_code": code.digits}),
                      details={"code_kind": CodeKind.WALLET_NUMERIC.value, "wallet_code_masked": code.masked})
    return CodePayment(CodeKind.WALLET_NUMERIC, PaymentRequest(amount=amount, method=Method.WALLET_NUMERIC), facts)


def prepare_code_payment(svc: Service, text: str, amount: Money) -> CodePayment:
    """The payment a scanned text asks for, or `QrPayloadError` saying why it cannot pay."""
    code = qrpay.classify(text, svc.config.qr.numeric_prefixes)
    if isinstance(code, qrpay.ConsumerPresentedCode):
        return _cpm(svc, code, amount)
    if isinstance(code, qrpay.SignedWalletCode):
        return _signed(svc, code, amount)
    if isinstance(code, qrpay.NumericWalletCode):
        return _numeric(svc, code, amount)
    if isinstance(code, qrpay.MerchantPresentedCode):
        raise QrPayloadError("this is a merchant's payment code: the customer scans it with the wallet app; "
                             "the terminal cannot pay with it", reason="merchant_code")
    raise QrPayloadError(f"not a payment code: {code.description}", reason=Why.NOT_A_PAYMENT_CODE.value)


def _decline_signed(svc: Service, text: str, amount: Money, reason: str, message: str,
                    operator: str | None) -> CodePayResult:
    """Journal the decline of a signed wallet code that failed verification or was used before."""
    try:
        code = qrpay.parse_wallet_code(text)
        details: dict[str, Any] = {"code_kind": CodeKind.WALLET_SIGNED.value, "code_problem": reason,
                                   "key_id": code.key_id, "claimed_wallet_id": code.wallet_id,
                                   "code_counter": code.counter}
    except QrPayloadError:
        details = {"code_kind": CodeKind.WALLET_SIGNED.value, "code_problem": reason}
    journal = svc.require_journal()
    row = journal.append(
        NewTransaction(kind="sale", amount=amount, method=Method.WALLET_SIGNED.value, decision="declined",
                       reasons=(reason,), auth_mode="none", scheme="wallet", operator=operator, details=details),
        now=svc.clock(), business_date=svc.business_date())
    log.info("wallet code refused seq=%d reason=%s", row.seq, reason)
    return CodePayResult(CodeKind.WALLET_SIGNED.value, "declined", (reason,), f"Declined: {message}.",
                         transaction_id=row.id)


def journal_refusal(svc: Service, text: str, amount: Money, exc: QrPayloadError, *,
                    operator: str | None = None) -> CodePayResult | None:
    """Journal the refusal `exc` of `text` as a declined payment when it is the refusal of a signed
    wallet code (a payment attempt the backend should see); None when nothing is journaled. For a
    checkout that calls `prepare_code_payment` itself."""
    kind = qrpay.kind_of(text, svc.config.qr.numeric_prefixes) if isinstance(text, str) else CodeKind.OTHER
    if kind is CodeKind.WALLET_SIGNED and exc.reason in JOURNALED_REFUSALS:
        return _decline_signed(svc, text, amount, exc.reason, exc.message, operator)
    return None


def pay_code(svc: Service, text: str, amount: Money, *, operator: str | None = None) -> CodePayResult:
    """Decide and journal a payment with a scanned code (see the module docstring)."""
    kind = qrpay.kind_of(text, svc.config.qr.numeric_prefixes) if isinstance(text, str) else CodeKind.OTHER
    try:
        try:
            payment = prepare_code_payment(svc, text, amount)
        except QrPayloadError as exc:
            declined = journal_refusal(svc, text, amount, exc, operator=operator)
            return declined or CodePayResult(kind.value, "refused", (exc.reason,), exc.message)
        claim = payment.claim
        if claim is not None and svc.journal is not None and svc.journal.code_used(claim.wallet_id, claim.counter):
            return _decline_signed(svc, text, amount, "code_already_used", "this payment code was already used",
                                   operator)
    except StorageError as exc:  # the journal cannot record: nothing is approved (fail closed)
        log.error("code payment refused, cannot record: %s", exc.message)
        return CodePayResult(kind.value, "declined", ("storage_failure",),
                             f"Not approved: the terminal cannot record payments ({exc.message}).")
    result = svc.pay(payment.request, payment.facts, operator=operator, claim=claim)
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


def merchant_code_lifetime(svc: Service) -> timedelta:
    """How long a merchant code no screen watches stays payable (`qr.merchant_code_minutes`)."""
    return timedelta(minutes=svc.config.qr.merchant_code_minutes)


def merchant_qr(svc: Service, amount: Money, txn_id: str | None = None, *, operator: str | None = None,
                on_screen: bool = False) -> MerchantQr:
    """The dynamic merchant code for one payment of `amount` (the customer scans it and pays in the app).

    The code is in the journal (open) before anyone can see it: whatever becomes of it (paid while
    shown, paid after the cashier gave up, the terminal restarted), the sync worker can find it,
    close it at the backend and record a payment made with it (`settle_merchant_codes`). With
    `on_screen` the caller watches it (`Checkout.wait_merchant_qr`) and closes it when done."""
    if amount.currency != svc.currency or not amount.is_positive:
        raise QrPayloadError(f"a merchant code is for a positive amount in {svc.currency.alpha}",
                             reason=Why.INVALID_FIELD.value)
    t = svc.config.terminal
    q = svc.config.qr
    txn_id = txn_id or new_txn_id()
    reference = reference_of(txn_id)
    payload = qrpay.dynamic_mpm(
        merchant_account=(f"{q.merchant_account_id:02d}", [("00", q.merchant_account_guid), ("01", t.merchant_id)]),
        mcc=t.merchant_category_code, amount=amount, country=t.country, merchant_name=t.merchant_name,
        merchant_city=t.merchant_city, reference=reference, terminal_label=t.id)
    if on_screen:
        svc.code_on_screen(reference, True)
    now = svc.clock()
    try:
        svc.require_journal().open_merchant_code(reference, txn_id, amount, operator, now=now)
    except StorageError:
        svc.code_on_screen(reference, False)
        raise
    return MerchantQr(payload, amount, reference, txn_id, now, now + merchant_code_lifetime(svc))


def record_merchant_outcome(svc: Service, reference: str, txn_id: str, amount: Money, status: PaymentStatus,
                            operator: str | None) -> TxnRow:
    """Journal what the backend says became of a merchant code (paid, paid another amount, cancelled
    by the customer in the app) and close the code. Idempotent: when the transaction is already in
    the journal it is returned, not written again."""
    journal = svc.require_journal()
    row = journal.get(txn_id)
    if row is None:
        paid = status.status == "paid"
        matches = status.amount in (None, amount.minor) and status.currency in (None, amount.currency.alpha)
        approved = paid and matches
        reasons = ("paid_in_wallet_app",) if approved else (("amount_mismatch",) if paid else ("payment_cancelled",))
        if paid and not matches:
            log.error("merchant code %s paid %s %s, expected %s", reference, status.amount, status.currency, amount)
        row = journal.append(
            NewTransaction(kind="sale", amount=amount, method="merchant_qr",
                           decision="approved" if approved else "declined", reasons=reasons, auth_mode="online",
                           scheme="wallet", card_token=status.card_token, operator=operator, id=txn_id,
                           details={"reference": reference, "paid_amount": status.amount}),
            now=svc.clock(), business_date=svc.business_date())
    journal.close_merchant_code(reference, "paid" if row.approved else row.reasons[0], now=svc.clock())
    return row


def close_merchant_code(svc: Service, reference: str, txn_id: str, amount: Money, operator: str | None, *,
                        reason: str = "closed_by_cashier") -> TxnRow | None:
    """Close a merchant code at the backend so that it can no longer be paid. Returns the sale row
    when the customer had paid it first (journaled now if it was not yet), None when it closed
    unpaid. Raises `WalletposError` when the backend does not answer: the code stays open, marked
    for closing, and the sync worker closes it when the backend answers again."""
    journal = svc.require_journal()
    journal.request_merchant_code_close(reference)
    status = svc.cancel_merchant_payment(reference, reason)
    if status.status == "paid":
        return record_merchant_outcome(svc, reference, txn_id, amount, status, operator)
    journal.close_merchant_code(reference, "closed", now=svc.clock())
    return None


def settle_merchant_codes(svc: Service, *, on_screen: set[str]) -> list[TxnRow]:
    """Merchant codes still open that no screen watches: record a payment made with one, close the
    ones whose cashier gave up (or older than `qr.merchant_code_minutes`) at the backend. Returns the rows
    journaled. Backend errors propagate (the caller tries again at its next cycle)."""
    journal = svc.require_journal()
    rows: list[TxnRow] = []
    now = svc.clock()
    lifetime = merchant_code_lifetime(svc)
    for code in journal.open_merchant_codes():
        reference = code["reference"]
        if reference in on_screen:
            continue
        args = (svc, reference, code["txn_id"], code["amount"])
        if code["close_requested"] or now - code["shown_at"] >= lifetime:
            row = close_merchant_code(*args, code["operator"], reason="closed_by_terminal")
        else:
            status = svc.payment_status(reference)
            row = None if status.status == "pending" else record_merchant_outcome(*args, status, code["operator"])
        if row is not None:
            log.warning("merchant code %s: %s %s after it left the screen (transaction %s)", reference,
                        "paid" if row.approved else "ended", row.amount, row.id)
            rows.append(row)
    return rows
