"""Sentences for what the core decides. The core returns decisions and reason codes only; the
wording of every reason lives in the locale catalogues (`terminal.i18n`), and this module puts the
pieces together: a headline, the reasons in words, the punctuation of the locale.

    outcome_message(outcome)        'Decline: the card has expired.'
    outcome_dict(outcome)           RuleOutcome.to_dict() with a "message" for it and its fallback
    refund_check_message(check)     'Refund refused: a supervisor PIN is required.'
    payment_message(...)            'Approved offline: within the floor limit.'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from terminal.core.rules import Decision, RefundCheck, RuleOutcome
from terminal.i18n import Locale, t
from terminal.i18n import reason as reason_text

ENGLISH: Locale = "en"


def sentence(locale: Locale, head: str, reasons: Iterable[str] = ()) -> str:
    """`head` alone, or `head` followed by `reasons` (already in words), punctuated for `locale`."""
    parts = list(reasons)
    if not parts:
        return t(locale, "sentence.bare", head=head)
    return t(locale, "sentence.with_reasons", head=head,
             reasons=t(locale, "sentence.reason_separator").join(parts))


def outcome_message(outcome: RuleOutcome, locale: Locale = ENGLISH) -> str:
    """The rules' decision as one sentence: 'Decline: the card has expired.'"""
    return decision_message(outcome.decision, outcome.reasons, locale)


def decision_message(decision: Decision, reasons: Iterable[str], locale: Locale = ENGLISH) -> str:
    return sentence(locale, t(locale, f"rules.{decision.value}"), (reason_text(locale, r) for r in reasons))


def outcome_dict(outcome: RuleOutcome, locale: Locale = ENGLISH) -> dict[str, Any]:
    """`outcome.to_dict()` (decision and reason codes) with the sentences added."""
    codes = outcome.to_dict()
    out: dict[str, Any] = {"decision": codes["decision"], "reasons": codes["reasons"],
                           "message": outcome_message(outcome, locale)}
    if "fallback" in codes and outcome.fallback is not None:
        out["fallback"] = {**codes["fallback"],
                           "message": decision_message(outcome.fallback, outcome.fallback_reasons, locale)}
    return out


def refund_check_message(check: RefundCheck, locale: Locale = ENGLISH) -> str:
    """A refund or void check as one sentence: 'Refund allowed.' or 'Refund refused: ...'."""
    if check.allowed:
        return sentence(locale, t(locale, "refund.allowed"))
    return sentence(locale, t(locale, "refund.not_allowed"), (t(locale, f"problem.{p.value}") for p in check.problems))


def payment_message(approved: bool, auth_mode: str, reasons: Iterable[str], *, backend_answered: bool = False,
                    backend_reason: str | None = None, locale: Locale = ENGLISH) -> str:
    """The result of a payment as one sentence. `reasons` are the rules' codes behind an offline
    answer; `backend_reason` is the backend's own code for a decline, shown as it came."""
    if backend_answered:
        if approved:
            return sentence(locale, t(locale, "payment.approved_by_backend"))
        return sentence(locale, t(locale, "payment.declined_by_backend"), [backend_reason] if backend_reason else ())
    head = t(locale, "payment.approved_offline" if approved else "payment.declined")
    if auth_mode == "offline_fallback":
        head = t(locale, "payment.no_answer", head=head)
    return sentence(locale, head, (reason_text(locale, r) for r in reasons))


__all__ = [
    "decision_message", "outcome_dict", "outcome_message", "payment_message", "reason_text", "refund_check_message",
    "sentence",
]
