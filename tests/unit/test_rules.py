"""Table-driven tests of the offline approval rules: every rule at limit-1, limit and limit+1."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from terminal import messages
from terminal.config import load_config
from terminal.core.money import Money, currency, parse_amount
from terminal.core.rules import (
    Decision,
    Method,
    OriginalSale,
    PaymentRequest,
    Reason,
    RefundProblem,
    RuleSet,
    TerminalState,
    WalletTier,
    check_refund,
    check_void,
    decide,
)
from terminal.i18n import CATALOGUES, LOCALES

CNY = currency("CNY")
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
TODAY = date(2026, 11, 23)

# The embedded defaults: contactless 10,000.00; floor 100.00; CVM 1,000.00; offline cap 300.00;
# per card per day 1,000.00 / 10 payments; exposure 20,000.00; sync age 24 h;
# unverified 500.00 / 1,000.00 a day; real-name 5,000.00 / 50,000.00 a day.
RULES = RuleSet.from_config(load_config(env={}))


def y(text: str) -> Money:
    return parse_amount(text, CNY, allow_zero=True)


def state(**changes: object) -> TerminalState:
    base = TerminalState(
        now=NOW, business_date=TODAY, card_offline_amount_today=y("0"), card_offline_count_today=0,
        card_amount_today=y("0"), unsynced_exposure=y("0"), last_sync_at=NOW - timedelta(hours=1),
        deny_listed=False, backend_reachable=True,
    )
    return replace(base, **changes)


def pay(amount: str, method: Method = Method.CARD, **changes: object) -> PaymentRequest:
    return replace(PaymentRequest(amount=y(amount), method=method, card_token="t1"), **changes)


A, G, N, D = Decision.APPROVE_OFFLINE, Decision.GO_ONLINE, Decision.NEED_CVM, Decision.DECLINE
R = Reason
OFFLINE = {"backend_reachable": False}

CASES = [
    # --- floor limit 100.00: above (>) it goes online -----------------------------------------
    ("floor-1", pay("99.99"), state(), A, [R.BELOW_FLOOR_LIMIT], None),
    ("floor", pay("100.00"), state(), A, [R.BELOW_FLOOR_LIMIT], None),
    ("floor+1", pay("100.01"), state(), G, [R.ABOVE_FLOOR_LIMIT], (A, [R.OFFLINE_FALLBACK, R.ABOVE_FLOOR_LIMIT])),
    ("floor+1 offline", pay("100.01"), state(**OFFLINE), A, [R.OFFLINE_FALLBACK, R.ABOVE_FLOOR_LIMIT], None),
    ("floor offline", pay("100.00"), state(**OFFLINE), A, [R.BELOW_FLOOR_LIMIT], None),
    # --- CVM required limit 1,000.00: at or above (>=) needs verification -----------------------
    ("cvm-1", pay("999.99"), state(), G, [R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED], None),
    ("cvm", pay("1000.00"), state(), N, [R.CVM_REQUIRED], None),
    ("cvm+1", pay("1000.01"), state(), N, [R.CVM_REQUIRED], None),
    ("cvm done", pay("1000.00", cvm_performed=True), state(), G,
     [R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED], None),
    # --- contactless transaction limit 10,000.00: at or above (>=) is not allowed ---------------
    ("ctl-1", pay("9999.99", cvm_performed=True), state(), G,
     [R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED, R.CARD_DAILY_AMOUNT_EXCEEDED], None),
    ("ctl", pay("10000.00", cvm_performed=True), state(), D, [R.CONTACTLESS_LIMIT_EXCEEDED], None),
    ("ctl+1", pay("10000.01", cvm_performed=True), state(), D, [R.CONTACTLESS_LIMIT_EXCEEDED], None),
    ("ctl not for codes", pay("10000.00", Method.QR_CPM, cvm_performed=True), state(), G,
     [R.ONLINE_ONLY_METHOD, R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED, R.CARD_DAILY_AMOUNT_EXCEEDED], None),
    # --- per-payment offline cap 300.00 (inclusive) ---------------------------------------------
    ("cap-1", pay("299.99"), state(**OFFLINE), A, [R.OFFLINE_FALLBACK, R.ABOVE_FLOOR_LIMIT], None),
    ("cap", pay("300.00"), state(**OFFLINE), A, [R.OFFLINE_FALLBACK, R.ABOVE_FLOOR_LIMIT], None),
    ("cap+1", pay("300.01"), state(**OFFLINE), D,
     [R.BACKEND_UNREACHABLE, R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED], None),
    ("cap+1 online", pay("300.01"), state(), G, [R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED],
     (D, [R.BACKEND_UNREACHABLE, R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED])),
    # --- per-card daily offline amount 1,000.00 (950.00 already today) ---------------------------
    ("day amount-1", pay("49.99"), state(card_offline_amount_today=y("950.00")), A, [R.BELOW_FLOOR_LIMIT], None),
    ("day amount", pay("50.00"), state(card_offline_amount_today=y("950.00")), A, [R.BELOW_FLOOR_LIMIT], None),
    ("day amount+1", pay("50.01"), state(card_offline_amount_today=y("950.00")), G,
     [R.CARD_DAILY_AMOUNT_EXCEEDED], (D, [R.BACKEND_UNREACHABLE, R.CARD_DAILY_AMOUNT_EXCEEDED])),
    ("day amount+1 offline", pay("50.01"), state(card_offline_amount_today=y("950.00"), **OFFLINE), D,
     [R.BACKEND_UNREACHABLE, R.CARD_DAILY_AMOUNT_EXCEEDED], None),
    # --- per-card daily offline count 10 ---------------------------------------------------------
    ("day count-1", pay("10.00"), state(card_offline_count_today=9), A, [R.BELOW_FLOOR_LIMIT], None),
    ("day count", pay("10.00"), state(card_offline_count_today=10), G, [R.CARD_DAILY_COUNT_EXCEEDED],
     (D, [R.BACKEND_UNREACHABLE, R.CARD_DAILY_COUNT_EXCEEDED])),
    ("day count+1", pay("10.00"), state(card_offline_count_today=11, **OFFLINE), D,
     [R.BACKEND_UNREACHABLE, R.CARD_DAILY_COUNT_EXCEEDED], None),
    # --- terminal-wide unsynced exposure cap 20,000.00 (19,950.00 outstanding) -------------------
    ("exposure-1", pay("49.99"), state(unsynced_exposure=y("19950.00")), A, [R.BELOW_FLOOR_LIMIT], None),
    ("exposure", pay("50.00"), state(unsynced_exposure=y("19950.00")), A, [R.BELOW_FLOOR_LIMIT], None),
    ("exposure+1", pay("50.01"), state(unsynced_exposure=y("19950.00"), **OFFLINE), D,
     [R.BACKEND_UNREACHABLE, R.EXPOSURE_CAP_EXCEEDED], None),
    # --- maximum time since the last successful sync: 24 h (older than that blocks) ---------------
    ("sync-1s", pay("10.00"), state(last_sync_at=NOW - timedelta(hours=24) + timedelta(seconds=1)), A,
     [R.BELOW_FLOOR_LIMIT], None),
    ("sync 24h", pay("10.00"), state(last_sync_at=NOW - timedelta(hours=24)), A, [R.BELOW_FLOOR_LIMIT], None),
    ("sync+1s", pay("10.00"), state(last_sync_at=NOW - timedelta(hours=24, seconds=1), **OFFLINE), D,
     [R.BACKEND_UNREACHABLE, R.SYNC_TOO_OLD], None),
    ("sync+1s online", pay("10.00"), state(last_sync_at=NOW - timedelta(hours=24, seconds=1)), G,
     [R.SYNC_TOO_OLD], (D, [R.BACKEND_UNREACHABLE, R.SYNC_TOO_OLD])),
    # --- wallet tier: unverified 500.00 per payment, 1,000.00 a day ----------------------------
    ("unverified pay-1", pay("499.99", Method.WALLET_SIGNED, wallet_tier=WalletTier.UNVERIFIED), state(), G,
     [R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED], None),
    ("unverified pay", pay("500.00", Method.WALLET_SIGNED, wallet_tier=WalletTier.UNVERIFIED), state(), G,
     [R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED], None),
    ("unverified pay+1", pay("500.01", Method.WALLET_SIGNED, wallet_tier=WalletTier.UNVERIFIED), state(), D,
     [R.TIER_PAYMENT_LIMIT_EXCEEDED], None),
    ("unverified day-1", pay("99.99", Method.WALLET_SIGNED, wallet_tier=WalletTier.UNVERIFIED),
     state(card_amount_today=y("900.00")), A, [R.BELOW_FLOOR_LIMIT], None),
    ("unverified day", pay("100.00", Method.WALLET_SIGNED, wallet_tier=WalletTier.UNVERIFIED),
     state(card_amount_today=y("900.00")), A, [R.BELOW_FLOOR_LIMIT], None),
    ("unverified day+1", pay("100.01", Method.WALLET_SIGNED, wallet_tier=WalletTier.UNVERIFIED),
     state(card_amount_today=y("900.00")), D, [R.TIER_DAILY_LIMIT_EXCEEDED], None),
    # --- wallet tier: real-name 5,000.00 per payment, 50,000.00 a day -------------------------
    ("real-name pay-1", pay("4999.99", Method.WALLET_SIGNED, wallet_tier=WalletTier.REAL_NAME, cvm_performed=True),
     state(), G, [R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED, R.CARD_DAILY_AMOUNT_EXCEEDED], None),
    ("real-name pay", pay("5000.00", Method.WALLET_SIGNED, wallet_tier=WalletTier.REAL_NAME, cvm_performed=True),
     state(), G, [R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED, R.CARD_DAILY_AMOUNT_EXCEEDED], None),
    ("real-name pay+1", pay("5000.01", Method.WALLET_SIGNED, wallet_tier=WalletTier.REAL_NAME, cvm_performed=True),
     state(), D, [R.TIER_PAYMENT_LIMIT_EXCEEDED], None),
    ("real-name day-1", pay("99.99", Method.WALLET_SIGNED, wallet_tier=WalletTier.REAL_NAME),
     state(card_amount_today=y("49900.00")), A, [R.BELOW_FLOOR_LIMIT], None),
    ("real-name day", pay("100.00", Method.WALLET_SIGNED, wallet_tier=WalletTier.REAL_NAME),
     state(card_amount_today=y("49900.00")), A, [R.BELOW_FLOOR_LIMIT], None),
    ("real-name day+1", pay("100.01", Method.WALLET_SIGNED, wallet_tier=WalletTier.REAL_NAME),
     state(card_amount_today=y("49900.00")), D, [R.TIER_DAILY_LIMIT_EXCEEDED], None),
    # --- card expiry: valid through its last day ---------------------------------------------
    ("expiry-1", pay("10.00", expiry=TODAY + timedelta(days=1)), state(), A, [R.BELOW_FLOOR_LIMIT], None),
    ("expiry", pay("10.00", expiry=TODAY), state(), A, [R.BELOW_FLOOR_LIMIT], None),
    ("expiry+1", pay("10.00", expiry=TODAY - timedelta(days=1)), state(), D, [R.CARD_EXPIRED], None),
    # --- deny list, currency, amount --------------------------------------------------------
    ("deny list", pay("10.00"), state(deny_listed=True), D, [R.DENY_LISTED], None),
    ("deny list offline", pay("10.00"), state(deny_listed=True, **OFFLINE), D, [R.DENY_LISTED], None),
    ("foreign currency", PaymentRequest(Money(1000, currency("USD")), Method.CARD), state(), D,
     [R.CURRENCY_NOT_ACCEPTED], None),
    ("zero amount", pay("0"), state(), D, [R.INVALID_AMOUNT], None),
    # --- online-only methods -----------------------------------------------------------------
    ("numeric code online", pay("10.00", Method.WALLET_NUMERIC), state(), G, [R.ONLINE_ONLY_METHOD],
     (D, [R.BACKEND_UNREACHABLE, R.ONLINE_ONLY_METHOD])),
    ("numeric code offline", pay("10.00", Method.WALLET_NUMERIC), state(**OFFLINE), D,
     [R.BACKEND_UNREACHABLE, R.ONLINE_ONLY_METHOD], None),
    # --- a PIN typed at the terminal is only worth something online --------------------------
    ("online pin", pay("1000.00", cvm_performed=True, online_pin=True), state(), G,
     [R.ONLINE_PIN, R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED],
     (D, [R.BACKEND_UNREACHABLE, R.ONLINE_PIN, R.ABOVE_FLOOR_LIMIT, R.OFFLINE_PAYMENT_CAP_EXCEEDED])),
    ("online pin small", pay("50.00", cvm_performed=True, online_pin=True), state(**OFFLINE), D,
     [R.BACKEND_UNREACHABLE, R.ONLINE_PIN], None),
    # --- several hard reasons are all reported ------------------------------------------------
    ("all hard reasons", pay("10000.00", expiry=TODAY - timedelta(days=1), wallet_tier=WalletTier.REAL_NAME),
     state(deny_listed=True), D,
     [R.DENY_LISTED, R.CARD_EXPIRED, R.CONTACTLESS_LIMIT_EXCEEDED, R.TIER_PAYMENT_LIMIT_EXCEEDED], None),
]


@pytest.mark.parametrize(("name", "request_", "state_", "decision", "reasons", "fallback"), CASES,
                         ids=[c[0] for c in CASES])
def test_rule_table(name, request_, state_, decision, reasons, fallback):
    outcome = decide(request_, state_, RULES)
    assert outcome.decision is decision, outcome
    assert list(outcome.reasons) == reasons
    if fallback is not None:
        assert (outcome.fallback, list(outcome.fallback_reasons)) == (fallback[0], fallback[1])
    if decision is Decision.GO_ONLINE:
        assert outcome.fallback in (Decision.APPROVE_OFFLINE, Decision.DECLINE)
    else:
        assert outcome.fallback is None
    message = messages.outcome_message(outcome)
    assert message.endswith(".") and len(message) > 10


def test_go_online_offline_answer_is_the_decision_with_backend_unreachable():
    """The fallback decided before asking equals what the rules say with the backend down."""
    for _, request_, state_, decision, _, _ in CASES:
        outcome = decide(request_, state_, RULES)
        if decision is Decision.GO_ONLINE:
            down = decide(request_, replace(state_, backend_reachable=False), RULES)
            assert outcome.offline_answer() == down


def test_outcome_to_dict_is_machine_readable():
    outcome = decide(pay("300.01"), state(), RULES)
    data = outcome.to_dict()
    assert data["decision"] == "go_online"
    assert data["reasons"] == ["above_floor_limit", "offline_payment_cap_exceeded"]
    assert data["fallback"]["decision"] == "decline"
    assert "backend_unreachable" in data["fallback"]["reasons"]
    assert "message" not in data and "message" not in data["fallback"]  # the core returns codes only
    worded = messages.outcome_dict(outcome)
    assert worded["reasons"] == data["reasons"]
    assert worded["message"] == "Ask the backend: above the floor limit; too large to approve offline."
    assert worded["fallback"]["message"].startswith("Decline: the backend cannot be reached; ")


def test_every_decision_reason_and_problem_has_words_in_every_locale():
    for locale in LOCALES:
        catalogue = CATALOGUES[locale]
        missing = [key for key in (*(f"rules.{d.value}" for d in Decision), *(f"reason.{r.value}" for r in Reason),
                                   *(f"problem.{p.value}" for p in RefundProblem)) if key not in catalogue]
        assert missing == [], locale


def test_sentences_follow_the_locale():
    expired = decide(replace(pay("10.00"), expiry=TODAY - timedelta(days=1)), state(), RULES)
    assert messages.outcome_message(expired) == "Decline: the card has expired."
    assert messages.outcome_message(expired, "zh-CN") == "拒绝：卡片已过期。"


# --- refunds and voids ------------------------------------------------------------------------

SALE = OriginalSale(kind="sale", approved=True, voided=False, amount=y("80.00"), refunded=y("0"),
                    created_at=NOW - timedelta(days=1), business_date=TODAY - timedelta(days=1))


@pytest.mark.parametrize(
    ("name", "original", "amount", "age", "supervisor", "problems"),
    [
        ("full refund", SALE, "80.00", timedelta(days=1), True, []),
        ("refund-1", SALE, "79.99", timedelta(days=1), True, []),
        ("refund+1", SALE, "80.01", timedelta(days=1), True, [RefundProblem.EXCEEDS_ORIGINAL]),
        ("partly refunded", replace(SALE, refunded=y("30.00")), "50.01", timedelta(days=1), True,
         [RefundProblem.EXCEEDS_ORIGINAL]),
        ("partly refunded rest", replace(SALE, refunded=y("30.00")), "50.00", timedelta(days=1), True, []),
        ("window-1s", SALE, "10.00", timedelta(days=7) - timedelta(seconds=1), True, []),
        ("window", SALE, "10.00", timedelta(days=7), True, []),
        ("window+1s", SALE, "10.00", timedelta(days=7, seconds=1), True, [RefundProblem.WINDOW_PASSED]),
        ("no supervisor", SALE, "10.00", timedelta(days=1), False, [RefundProblem.SUPERVISOR_PIN_REQUIRED]),
        ("declined sale", replace(SALE, approved=False), "10.00", timedelta(days=1), True,
         [RefundProblem.ORIGINAL_NOT_APPROVED]),
        ("voided sale", replace(SALE, voided=True), "10.00", timedelta(days=1), True, [RefundProblem.ORIGINAL_VOIDED]),
        ("refund of a refund", replace(SALE, kind="refund"), "10.00", timedelta(days=1), True,
         [RefundProblem.NOT_A_SALE]),
        ("zero", SALE, "0", timedelta(days=1), True, [RefundProblem.INVALID_AMOUNT]),
    ],
)
def test_refund_table(name, original, amount, age, supervisor, problems):
    check = check_refund(original, y(amount), now=original.created_at + age, window_days=7,
                         supervisor_verified=supervisor)
    assert list(check.problems) == problems
    assert check.allowed is (not problems)
    assert check.refundable == original.amount - original.refunded


def test_void_only_last_sale_same_day():
    ok = check_void(SALE, is_last_sale=True, business_date=SALE.business_date, supervisor_verified=True)
    assert ok.allowed
    later = check_void(SALE, is_last_sale=True, business_date=TODAY, supervisor_verified=True)
    assert later.problems == (RefundProblem.OTHER_BUSINESS_DAY,)
    not_last = check_void(SALE, is_last_sale=False, business_date=SALE.business_date, supervisor_verified=True)
    assert not_last.problems == (RefundProblem.NOT_LAST_SALE,)
    refunded = check_void(replace(SALE, refunded=y("1.00")), is_last_sale=True,
                          business_date=SALE.business_date, supervisor_verified=True)
    assert refunded.problems == (RefundProblem.ALREADY_REFUNDED,)
    assert "refund the rest" in messages.refund_check_message(refunded)
    assert messages.refund_check_message(ok) == "Refund allowed."
    assert messages.refund_check_message(not_last, "zh-CN") == "退货被拒：只能撤销最后一笔消费；更早的交易请退货。"
