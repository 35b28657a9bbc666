"""The payment path through the service in milliseconds: what the rules decide, what the (scripted)
backend is asked and answers, and that every decision is in the journal before it is returned. See
conftest.py for why the backend is a stand-in here."""

from __future__ import annotations

from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest, WalletTier
from terminal.payment import OnlineAnswer
from tests.service.conftest import tap


def card(service, minor: int, token: str = "tok-1", **fields) -> PaymentRequest:
    return PaymentRequest(Money(minor, service.currency), Method.CARD, card_token=token, **fields)


def journaled(service, result) -> dict:
    """The row of `result` as read back from the journal file (not the object returned)."""
    row = service.require_journal().txns.get(result.row.id)
    assert row is not None
    return row.to_dict()


def test_below_the_floor_limit_is_approved_offline_without_asking_the_backend(fast, authorizer):
    floor = fast.rule_set.floor_limit.minor
    result = fast.pay(card(fast, floor))
    assert (result.outcome, result.auth_mode, result.reasons) == ("approved", "offline", ("below_floor_limit",))
    assert authorizer.asked == []
    row = journaled(fast, result)
    assert (row["decision"], row["amount"], row["currency"]) == ("approved", floor, "CNY")


def test_above_the_floor_limit_goes_online_and_keeps_the_auth_code(fast, authorizer):
    amount = fast.rule_set.floor_limit.minor + 1
    result = fast.pay(card(fast, amount))
    assert (result.outcome, result.auth_mode) == ("approved", "online")
    [(request, txn_id, facts)] = authorizer.asked
    assert (request.amount.minor, request.card_token, txn_id) == (amount, "tok-1", result.row.id)
    assert facts["sealed_card"] is None  # no sealing key: this terminal is not enrolled
    assert journaled(fast, result)["details"]["auth_code"] == "A1B2C3"


def test_the_backend_declines_with_its_reason(fast, authorizer):
    authorizer.answer = OnlineAnswer(False, "insufficient_funds")
    result = fast.pay(card(fast, fast.rule_set.floor_limit.minor + 1))
    assert (result.outcome, result.auth_mode) == ("declined", "online")
    assert "insufficient_funds" in result.reasons
    assert journaled(fast, result)["decision"] == "declined"


def test_no_answer_falls_back_to_the_offline_rules(fast, authorizer):
    authorizer.answer = None  # a timeout
    within = fast.rule_set.offline_max_payment.minor
    result = fast.pay(card(fast, within))
    assert (result.outcome, result.auth_mode) == ("approved", "offline_fallback")
    assert "offline_fallback" in result.reasons
    over = fast.pay(card(fast, within + 1, token="tok-2"))
    assert (over.outcome, over.auth_mode) == ("declined", "offline_fallback")
    assert "offline_payment_cap_exceeded" in over.reasons


def test_a_backend_known_to_be_down_is_not_asked(fast, authorizer):
    authorizer.up = False
    result = fast.pay(card(fast, fast.rule_set.floor_limit.minor + 1))
    assert authorizer.asked == [] and result.auth_mode == "offline" and result.outcome == "approved"


def test_unverified_wallets_pay_small_amounts_and_at_most_the_daily_limit(fast, authorizer):
    tier = fast.rule_set.tiers[WalletTier.UNVERIFIED]
    too_big = fast.pay(card(fast, tier.payment_limit.minor + 1, wallet_tier=WalletTier.UNVERIFIED))
    assert too_big.outcome == "declined" and "tier_payment_limit_exceeded" in too_big.reasons
    paid = 0
    while paid + tier.payment_limit.minor <= tier.daily_limit.minor:
        assert fast.pay(card(fast, tier.payment_limit.minor, wallet_tier=WalletTier.UNVERIFIED)).approved
        paid += tier.payment_limit.minor
    over = fast.pay(card(fast, tier.daily_limit.minor - paid + 1, wallet_tier=WalletTier.UNVERIFIED))
    assert over.outcome == "declined" and "tier_daily_limit_exceeded" in over.reasons
    real_name = fast.pay(card(fast, tier.payment_limit.minor + 1, token="tok-3", wallet_tier=WalletTier.REAL_NAME))
    assert real_name.approved


def test_the_offline_count_per_card_and_day_is_kept(fast, authorizer):
    authorizer.up = False
    count = fast.rule_set.card_daily_count
    for _ in range(count):
        assert fast.pay(card(fast, 100)).approved
    refused = fast.pay(card(fast, 100))
    assert refused.outcome == "declined" and "card_daily_count_exceeded" in refused.reasons
    assert fast.pay(card(fast, 100, token="tok-other")).approved


def test_a_pin_is_asked_above_the_cvm_limit(fast, authorizer):
    result = fast.pay(card(fast, fast.rule_set.cvm_required_limit.minor))
    assert result.outcome == "need_cvm" and authorizer.asked == []


def test_a_virtual_card_on_the_simulated_reader_through_the_kernel(fast, authorizer):
    small = tap(fast, "visa", fast.rule_set.floor_limit.minor)
    assert small.outcome == "approved" and authorizer.asked == []
    big = tap(fast, "mastercard", fast.rule_set.floor_limit.minor + 1)
    assert big.outcome == "approved"
    [(_, _, facts)] = authorizer.asked
    assert facts["masked_pan"] and "*" in facts["masked_pan"] and facts["sealed_card"] is None  # not enrolled
    expired = tap(fast, "expired", 100)
    assert expired.outcome == "declined"


def test_every_decision_is_counted_in_the_queue(fast, authorizer):
    authorizer.answer = OnlineAnswer(False, "do_not_honour")
    fast.pay(card(fast, 100))
    fast.pay(card(fast, fast.rule_set.floor_limit.minor + 1))
    assert fast.queue_summary().pending == 2
