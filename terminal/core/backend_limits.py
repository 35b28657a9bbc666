"""How limits set by the backend combine with the terminal's own configuration (pure).

The backend may only tighten: every effective limit is the smaller of the local value and the
backend's. A smaller floor limit sends more payments online, a smaller CVM or contactless limit asks
for verification or another way to pay sooner, smaller offline caps approve less without the
backend, and a shorter sync age stops offline approvals sooner. A limit the backend leaves unset
(None) keeps the local value. Limits in another currency than the terminal's are not applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from terminal.core.money import Money
from terminal.core.rules import RuleSet

AMOUNT_LIMITS: Mapping[str, str] = {  # backend name -> RuleSet field
    "floor_limit": "floor_limit",
    "cvm_required_limit": "cvm_required_limit",
    "contactless_transaction_limit": "contactless_transaction_limit",
    "offline_max_payment": "offline_max_payment",
    "card_daily_amount": "card_daily_amount",
    "exposure_cap": "exposure_cap",
}


@dataclass(frozen=True, slots=True)
class BackendLimits:
    version: int
    currency: str  # ISO 4217 alphabetic code the amounts are in
    values: Mapping[str, int | None]  # minor units, or counts/hours; None = not set by the backend


@dataclass(frozen=True, slots=True)
class Tightened:
    rules: RuleSet
    applied: tuple[str, ...]  # the limits the backend made stricter
    problem: str | None = None  # why nothing was applied


def tighten(local: RuleSet, backend: BackendLimits) -> Tightened:
    if backend.currency != local.currency.alpha:
        return Tightened(local, (), f"backend limits are in {backend.currency}, the terminal works in "
                                    f"{local.currency.alpha}; they are not applied")
    amounts: dict[str, Money] = {}  # RuleSet field -> the backend's smaller amount
    applied: list[str] = []
    for name, attr in AMOUNT_LIMITS.items():
        value = backend.values.get(name)
        current: Money = getattr(local, attr)
        if value is not None and value < current.minor:
            amounts[attr] = Money(value, local.currency)
            applied.append(name)
    card_daily_count = local.card_daily_count
    count = backend.values.get("card_daily_count")
    if count is not None and count < local.card_daily_count:
        card_daily_count = count
        applied.append("card_daily_count")
    max_sync_age = local.max_sync_age
    hours = backend.values.get("max_hours_since_sync")
    if hours is not None and timedelta(hours=hours) < local.max_sync_age:
        max_sync_age = timedelta(hours=hours)
        applied.append("max_hours_since_sync")
    rules = dataclasses.replace(
        local,
        floor_limit=amounts.get("floor_limit", local.floor_limit),
        cvm_required_limit=amounts.get("cvm_required_limit", local.cvm_required_limit),
        contactless_transaction_limit=amounts.get("contactless_transaction_limit",
                                                  local.contactless_transaction_limit),
        offline_max_payment=amounts.get("offline_max_payment", local.offline_max_payment),
        card_daily_amount=amounts.get("card_daily_amount", local.card_daily_amount),
        exposure_cap=amounts.get("exposure_cap", local.exposure_cap),
        card_daily_count=card_daily_count,
        max_sync_age=max_sync_age,
    )
    return Tightened(rules, tuple(applied))
