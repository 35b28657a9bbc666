"""Offline approval rules: pure functions from (request, terminal state, rule set) to a decision.

Order of evaluation:
1. hard declines, whatever the network: foreign currency, bad amount, deny list, expired card,
   contactless transaction limit (card only, amount >= limit), wallet tier limits;
2. cardholder verification: amount >= CVM required limit and no CVM done -> `need_cvm`;
3. online need: amount > floor limit, an online-only method, or an offline limit that would be
   broken (per-payment offline cap, per-card daily amount/count, terminal exposure cap, sync age);
4. no online need -> `approve_offline`; online need and backend reachable -> `go_online`, carrying
   the offline answer (`fallback`) decided now, before asking, so a late or failed backend can only
   ever lead to that answer; backend unreachable -> that offline answer directly.

Boundaries follow EMV Book A/B: `>=` for the contactless transaction and CVM required limits, `>`
for the floor limit. Offline caps are inclusive maxima (an amount equal to the cap is allowed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import NotRequired, Protocol, TypedDict

from terminal.core.money import Currency, Money


class Method(StrEnum):
    CARD = "card"  # contactless EMV card or phone
    QR_CPM = "qr_cpm"  # EMVCo consumer-presented QR (card data in a code)
    WALLET_SIGNED = "wallet_signed"  # wallet payment code signed by the issuer, verifiable offline
    WALLET_NUMERIC = "wallet_numeric"  # numeric wallet payment code, resolvable only by the backend
    MERCHANT_QR = "merchant_qr"  # the customer scans the terminal's dynamic QR and pays in the app


# A consumer-presented EMV code carries an application cryptogram only the issuer can check (EMVCo
# Consumer-Presented Mode: the terminal sends it online): it is never approved offline.
ONLINE_ONLY_METHODS = frozenset({Method.WALLET_NUMERIC, Method.MERCHANT_QR, Method.QR_CPM})


class WalletTier(StrEnum):
    UNVERIFIED = "unverified"
    REAL_NAME = "real_name"


class Decision(StrEnum):
    APPROVE_OFFLINE = "approve_offline"
    GO_ONLINE = "go_online"
    NEED_CVM = "need_cvm"
    DECLINE = "decline"


class Reason(StrEnum):
    # approvals
    BELOW_FLOOR_LIMIT = "below_floor_limit"
    OFFLINE_FALLBACK = "offline_fallback"
    # hard declines
    INVALID_AMOUNT = "invalid_amount"
    CURRENCY_NOT_ACCEPTED = "currency_not_accepted"
    DENY_LISTED = "deny_listed"
    CARD_EXPIRED = "card_expired"
    CARD_DECLINED = "card_declined"
    CONTACTLESS_LIMIT_EXCEEDED = "contactless_limit_exceeded"
    TIER_PAYMENT_LIMIT_EXCEEDED = "tier_payment_limit_exceeded"
    TIER_DAILY_LIMIT_EXCEEDED = "tier_daily_limit_exceeded"
    # verification
    CVM_REQUIRED = "cvm_required"
    # reasons to go online (and, offline, to decline)
    ABOVE_FLOOR_LIMIT = "above_floor_limit"
    ONLINE_ONLY_METHOD = "online_only_method"
    ONLINE_PIN = "online_pin"
    OFFLINE_PAYMENT_CAP_EXCEEDED = "offline_payment_cap_exceeded"
    CARD_DAILY_AMOUNT_EXCEEDED = "card_daily_amount_exceeded"
    CARD_DAILY_COUNT_EXCEEDED = "card_daily_count_exceeded"
    EXPOSURE_CAP_EXCEEDED = "exposure_cap_exceeded"
    SYNC_TOO_OLD = "sync_too_old"
    JOURNAL_INTEGRITY = "journal_integrity"
    BACKEND_UNREACHABLE = "backend_unreachable"


@dataclass(frozen=True, slots=True)
class TierLimit:
    payment_limit: Money
    daily_limit: Money


# What `RuleSet.from_config` reads of a `terminal.config.Config` (the core does not import config).


class _TerminalSection(Protocol):
    @property
    def currency_info(self) -> Currency: ...


class _ReaderLimitsSection(Protocol):
    @property
    def contactless_transaction_limit(self) -> Money: ...
    @property
    def floor_limit(self) -> Money: ...
    @property
    def cvm_required_limit(self) -> Money: ...


class _OfflineSection(Protocol):
    @property
    def max_payment(self) -> Money: ...
    @property
    def card_daily_amount(self) -> Money: ...
    @property
    def card_daily_count(self) -> int: ...
    @property
    def exposure_cap(self) -> Money: ...
    @property
    def max_hours_since_sync(self) -> int: ...


class _TierSection(Protocol):
    @property
    def payment_limit(self) -> Money: ...
    @property
    def daily_limit(self) -> Money: ...


class _WalletTiersSection(Protocol):
    @property
    def unverified(self) -> _TierSection: ...
    @property
    def real_name(self) -> _TierSection: ...


class RulesConfig(Protocol):
    """The parts of the terminal configuration the rules are built from."""

    @property
    def terminal(self) -> _TerminalSection: ...
    @property
    def limits(self) -> _ReaderLimitsSection: ...
    @property
    def offline(self) -> _OfflineSection: ...
    @property
    def wallet_tiers(self) -> _WalletTiersSection: ...


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The limits the rules apply, all in the terminal currency."""

    currency: Currency
    contactless_transaction_limit: Money
    floor_limit: Money
    cvm_required_limit: Money
    offline_max_payment: Money
    card_daily_amount: Money
    card_daily_count: int
    exposure_cap: Money
    max_sync_age: timedelta
    tiers: Mapping[WalletTier, TierLimit]

    @classmethod
    def from_config(cls, cfg: RulesConfig) -> RuleSet:
        """Build from a `terminal.config.Config` (described by a protocol: the core does not import config)."""
        return cls(
            currency=cfg.terminal.currency_info,
            contactless_transaction_limit=cfg.limits.contactless_transaction_limit,
            floor_limit=cfg.limits.floor_limit,
            cvm_required_limit=cfg.limits.cvm_required_limit,
            offline_max_payment=cfg.offline.max_payment,
            card_daily_amount=cfg.offline.card_daily_amount,
            card_daily_count=cfg.offline.card_daily_count,
            exposure_cap=cfg.offline.exposure_cap,
            max_sync_age=timedelta(hours=cfg.offline.max_hours_since_sync),
            tiers={
                WalletTier.UNVERIFIED: TierLimit(
                    cfg.wallet_tiers.unverified.payment_limit, cfg.wallet_tiers.unverified.daily_limit
                ),
                WalletTier.REAL_NAME: TierLimit(
                    cfg.wallet_tiers.real_name.payment_limit, cfg.wallet_tiers.real_name.daily_limit
                ),
            },
        )


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    amount: Money
    method: Method
    card_token: str | None = None
    expiry: date | None = None  # last valid day (EMV 5F24)
    wallet_tier: WalletTier | None = None
    cvm_performed: bool = False
    online_pin: bool = False  # CVM is a PIN entered at the terminal: only the backend can verify it
    card_declined: bool = False  # the card itself declined (EMV cryptogram AAC)


@dataclass(frozen=True, slots=True)
class TerminalState:
    """What the journal and the sync worker know right now, as plain values."""

    now: datetime  # UTC
    business_date: date  # the local date (terminal time zone)
    card_offline_amount_today: Money
    card_offline_count_today: int
    card_amount_today: Money  # everything this payer had approved today at this terminal
    unsynced_exposure: Money  # offline approvals the backend has not yet accepted
    last_sync_at: datetime  # last successful sync, or when the terminal was installed
    deny_listed: bool
    backend_reachable: bool
    integrity_problem: str | None = None  # why the journal is in doubt (offline approvals off), or None


class DecisionCodes(TypedDict):
    decision: str
    reasons: list[str]


class OutcomeCodes(DecisionCodes):
    """`RuleOutcome.to_dict()`: the decision, its reasons and, for `go_online`, the offline answer."""

    fallback: NotRequired[DecisionCodes]


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    decision: Decision
    reasons: tuple[Reason, ...]
    fallback: Decision | None = None
    fallback_reasons: tuple[Reason, ...] = field(default=())

    def offline_answer(self) -> RuleOutcome:
        """The answer to use when the backend cannot answer (for `go_online`), else self."""
        if self.decision is Decision.GO_ONLINE:
            assert self.fallback is not None
            return RuleOutcome(self.fallback, self.fallback_reasons)
        return self

    def to_dict(self) -> OutcomeCodes:
        """Decision and reason codes, machine-readable (`terminal.messages.outcome_dict` adds the words)."""
        out: OutcomeCodes = {
            "decision": self.decision.value,
            "reasons": [r.value for r in self.reasons],
        }
        if self.fallback is not None:
            out["fallback"] = {
                "decision": self.fallback.value,
                "reasons": [r.value for r in self.fallback_reasons],
            }
        return out


def decide(request: PaymentRequest, state: TerminalState, rules: RuleSet) -> RuleOutcome:
    amount = request.amount
    if amount.currency != rules.currency:
        return RuleOutcome(Decision.DECLINE, (Reason.CURRENCY_NOT_ACCEPTED,))
    if amount.minor <= 0:
        return RuleOutcome(Decision.DECLINE, (Reason.INVALID_AMOUNT,))

    hard: list[Reason] = []
    if state.deny_listed:
        hard.append(Reason.DENY_LISTED)
    if request.expiry is not None and state.business_date > request.expiry:
        hard.append(Reason.CARD_EXPIRED)
    if request.card_declined:
        hard.append(Reason.CARD_DECLINED)
    if request.method is Method.CARD and amount.minor >= rules.contactless_transaction_limit.minor:
        hard.append(Reason.CONTACTLESS_LIMIT_EXCEEDED)
    if request.wallet_tier is not None:
        tier = rules.tiers[request.wallet_tier]
        if amount.minor > tier.payment_limit.minor:
            hard.append(Reason.TIER_PAYMENT_LIMIT_EXCEEDED)
        if state.card_amount_today.minor + amount.minor > tier.daily_limit.minor:
            hard.append(Reason.TIER_DAILY_LIMIT_EXCEEDED)
    if hard:
        return RuleOutcome(Decision.DECLINE, tuple(hard))

    if amount.minor >= rules.cvm_required_limit.minor and not request.cvm_performed:
        return RuleOutcome(Decision.NEED_CVM, (Reason.CVM_REQUIRED,))

    online: list[Reason] = []
    if request.method in ONLINE_ONLY_METHODS:
        online.append(Reason.ONLINE_ONLY_METHOD)
    if request.online_pin:
        online.append(Reason.ONLINE_PIN)
    if amount.minor > rules.floor_limit.minor:
        online.append(Reason.ABOVE_FLOOR_LIMIT)

    blockers: list[Reason] = []  # what forbids approving this payment offline
    if amount.minor > rules.offline_max_payment.minor:
        blockers.append(Reason.OFFLINE_PAYMENT_CAP_EXCEEDED)
    if state.card_offline_amount_today.minor + amount.minor > rules.card_daily_amount.minor:
        blockers.append(Reason.CARD_DAILY_AMOUNT_EXCEEDED)
    if state.card_offline_count_today >= rules.card_daily_count:
        blockers.append(Reason.CARD_DAILY_COUNT_EXCEEDED)
    if state.unsynced_exposure.minor + amount.minor > rules.exposure_cap.minor:
        blockers.append(Reason.EXPOSURE_CAP_EXCEEDED)
    if state.now - state.last_sync_at > rules.max_sync_age:
        blockers.append(Reason.SYNC_TOO_OLD)
    if state.integrity_problem:
        blockers.append(Reason.JOURNAL_INTEGRITY)

    offline_possible = not blockers and Reason.ONLINE_ONLY_METHOD not in online and Reason.ONLINE_PIN not in online
    if not online and offline_possible:
        return RuleOutcome(Decision.APPROVE_OFFLINE, (Reason.BELOW_FLOOR_LIMIT,))

    if offline_possible:
        offline = RuleOutcome(Decision.APPROVE_OFFLINE, (Reason.OFFLINE_FALLBACK, *online))
    else:
        offline = RuleOutcome(Decision.DECLINE, (Reason.BACKEND_UNREACHABLE, *online, *blockers))
    if state.backend_reachable:
        return RuleOutcome(Decision.GO_ONLINE, (*online, *blockers), offline.decision, offline.reasons)
    return offline


# ------------------------------------------------------------------------------------------------
# Refunds and voids


class RefundProblem(StrEnum):
    NOT_A_SALE = "not_a_sale"
    ORIGINAL_NOT_APPROVED = "original_not_approved"
    ORIGINAL_VOIDED = "original_voided"
    WINDOW_PASSED = "refund_window_passed"
    EXCEEDS_ORIGINAL = "refund_exceeds_original"
    SUPERVISOR_PIN_REQUIRED = "supervisor_pin_required"
    INVALID_AMOUNT = "invalid_amount"
    CURRENCY_MISMATCH = "currency_mismatch"
    NOT_LAST_SALE = "not_last_sale"
    ALREADY_REFUNDED = "already_refunded"
    OTHER_BUSINESS_DAY = "other_business_day"


@dataclass(frozen=True, slots=True)
class OriginalSale:
    """The facts about an earlier journal row that a refund or void needs."""

    kind: str
    approved: bool
    voided: bool
    amount: Money
    refunded: Money  # sum of approved refunds against it so far
    created_at: datetime  # UTC
    business_date: date


@dataclass(frozen=True, slots=True)
class RefundCheck:
    allowed: bool
    problems: tuple[RefundProblem, ...]
    refundable: Money  # what is left to refund (in words: `terminal.messages.refund_check_message`)


def _original_problems(original: OriginalSale) -> list[RefundProblem]:
    problems = []
    if original.kind not in ("sale", "fare"):
        problems.append(RefundProblem.NOT_A_SALE)
    if not original.approved:
        problems.append(RefundProblem.ORIGINAL_NOT_APPROVED)
    if original.voided:
        problems.append(RefundProblem.ORIGINAL_VOIDED)
    return problems


def check_refund(
    original: OriginalSale, amount: Money, *, now: datetime, window_days: int, supervisor_verified: bool
) -> RefundCheck:
    problems = _original_problems(original)
    left = original.amount - original.refunded
    if amount.currency != original.amount.currency:
        problems.append(RefundProblem.CURRENCY_MISMATCH)
    elif amount.minor <= 0:
        problems.append(RefundProblem.INVALID_AMOUNT)
    elif amount.minor > left.minor:
        problems.append(RefundProblem.EXCEEDS_ORIGINAL)
    if now - original.created_at > timedelta(days=window_days):
        problems.append(RefundProblem.WINDOW_PASSED)
    if not supervisor_verified:
        problems.append(RefundProblem.SUPERVISOR_PIN_REQUIRED)
    return RefundCheck(not problems, tuple(problems), left)


def check_void(
    original: OriginalSale, *, is_last_sale: bool, business_date: date, supervisor_verified: bool
) -> RefundCheck:
    problems = _original_problems(original)
    if not is_last_sale:
        problems.append(RefundProblem.NOT_LAST_SALE)
    if original.refunded.minor:
        problems.append(RefundProblem.ALREADY_REFUNDED)
    if original.business_date != business_date:
        problems.append(RefundProblem.OTHER_BUSINESS_DAY)
    if not supervisor_verified:
        problems.append(RefundProblem.SUPERVISOR_PIN_REQUIRED)
    return RefundCheck(not problems, tuple(problems), original.amount - original.refunded)
