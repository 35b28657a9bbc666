"""The limits in force: the local configuration tightened by the backend's (each effective limit is
the smaller of the two), and whether the backend's limits could be applied at all."""

from __future__ import annotations

from typing import Any

from terminal.core.backend_limits import tighten
from terminal.core.money import Money
from terminal.doctor.checks import Check, advice, timed
from terminal.doctor.context import DoctorContext

AREA = "limits"
FIELDS = ("floor_limit", "cvm_required_limit", "contactless_transaction_limit", "offline_max_payment",
          "card_daily_amount", "card_daily_count", "exposure_cap", "max_sync_age")


def _text(value: Any) -> str:
    if isinstance(value, Money):
        return str(value)
    if hasattr(value, "total_seconds"):
        return f"{value.total_seconds() / 3600:g} h"
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Money):
        return value.minor
    if hasattr(value, "total_seconds"):
        return int(value.total_seconds())
    return value


def _limits(ctx: DoctorContext) -> Check:
    local, current = ctx.rules_local, ctx.rules_current
    tightened = [name for name in FIELDS if getattr(local, name) != getattr(current, name)]
    measured = {"effective": {n: _plain(getattr(current, n)) for n in FIELDS},
                "local": {n: _plain(getattr(local, n)) for n in FIELDS}, "tightened_by_backend": tightened,
                "backend_limits_version": ctx.stored_limits.version if ctx.stored_limits else None}
    shown = ", ".join(f"{n} {_text(getattr(current, n))} (local {_text(getattr(local, n))})" for n in tightened)
    figure = f"{len(tightened)} tightened by the backend" + (f": {shown}" if shown else "")
    if ctx.stored_limits is not None:
        problem = tighten(local, ctx.stored_limits).problem
        if problem:
            return Check(AREA, "limits", "warn", "backend limits not applied", problem, measured=measured,
                         **advice("limits_currency"))
    if current.offline_max_payment.minor == 0 or current.exposure_cap.minor == 0 or current.card_daily_count == 0:
        return Check(AREA, "limits", "warn", figure, "with these limits nothing is approved offline",
                     measured=measured, **advice("limits_offline_off"))
    floor = f"floor {_text(current.floor_limit)}, offline cap {_text(current.offline_max_payment)}, exposure cap " \
            f"{_text(current.exposure_cap)}"
    return Check(AREA, "limits", "pass", figure, f"in force: {floor}", measured=measured)


def check_limits(ctx: DoctorContext) -> list[Check]:
    return [timed(lambda: _limits(ctx))]


__all__ = ["check_limits"]
