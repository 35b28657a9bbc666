"""Taps at a transit gate: cards and signed wallet codes turned into fare decisions.

`TransitTaps` reads a card with the EMV kernel (`terminal.cardpay`: the card token, the masked
number, the expiry and the card's own cryptogram decision) or verifies a signed wallet code
(`terminal.codepay`: the wallet token, its tier as the concession, its single-use claim), then lets
`FarePayments.charge_fare` decide and journal the tap in one write transaction. A card that cannot be
read is answered at once (tap again, card not accepted) with nothing journaled: nobody is known to
have tapped. A signed wallet code that fails its checks is journaled as a declined fare row, as a
shop journals it, because a wallet was presented.

`load_fare_table` reads `[transit] fare_table` (relative to the config file) and checks it against
the terminal: the same currency, a time zone that exists, and this gate's station in it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers.base import CardRemovedError, ReaderUnavailableError
from terminal import codepay
from terminal.cardpay import CardPayments
from terminal.config import EMBEDDED, Config
from terminal.core import fares, gaterules, qrpay
from terminal.core.emv import ApduTransport
from terminal.core.money import Money
from terminal.core.qrpay import CodeKind
from terminal.errors import CardError, ConfigError, QrPayloadError, StorageError
from terminal.farepay import FarePayments
from terminal.journal import NewTransaction
from terminal.payment import STORAGE_FAILURE, FareResult, FareTap
from terminal.payments import Payments

log = logging.getLogger("walletpos.transit")


@dataclass(frozen=True, slots=True)
class GatePlace:
    """Where a gate stands: its id, its station and its direction (entry, exit or both)."""

    gate_id: str
    station: str
    direction: str

    @classmethod
    def configured(cls, config: Config) -> GatePlace:
        t = config.transit
        return cls(t.gate_id, t.station, t.direction)


def fare_table_path(config: Config) -> Path:
    name = config.transit.fare_table
    if not name:
        raise ConfigError("no fare table: set [transit] fare_table to a fare table file (see README.md, "
                          "\"Transit gate\", and config/fares-metro.toml)")
    path = Path(name).expanduser()
    if not path.is_absolute() and config.source != EMBEDDED:
        path = Path(config.source).resolve().parent / path
    return path


def load_fare_table(config: Config, path: Path | None = None) -> fares.FareTable:
    """The fare table of `[transit] fare_table` (or `path`), checked against the terminal."""
    path = path or fare_table_path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"fare table {path} cannot be read: {exc.strerror or exc}") from None
    table = fares.parse_fare_table(text, str(path))
    check_fare_table(config, table, str(path))
    return table


def check_fare_table(config: Config, table: fares.FareTable, source: str) -> None:
    if table.currency != config.currency:
        raise ConfigError(f"fare table {source} is in {table.currency.alpha}; this terminal charges "
                          f"{config.currency.alpha}")
    try:
        ZoneInfo(table.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"fare table {source}: timezone {table.timezone!r} is not an IANA time zone") from None
    station = config.transit.station
    if station and station not in table.stations:
        raise ConfigError(f"[transit] station {station!r} is not in fare table {source} (stations: "
                          f"{', '.join(sorted(table.stations))})")


def gate_policy(config: Config) -> gaterules.GatePolicy:
    """The gate rules from `[transit]` and `[offline] exposure_cap`. Without a backend nothing can
    confirm a card, so the first-ride limit is off."""
    t = config.transit
    return gaterules.GatePolicy(
        same_tap=timedelta(milliseconds=t.same_tap_ms), anti_passback=timedelta(seconds=t.anti_passback_seconds),
        max_sync_age=timedelta(hours=t.max_hours_since_sync),
        first_rides_unconfirmed=t.first_rides_offline if config.backend.enabled else 0,
        exposure_cap=config.offline.exposure_cap.minor)


def refusal(place: GatePlace, reason: str, sign: str, t0: float, row: Any = None) -> FareResult:
    """A tap answered without a fare decision (unreadable card, a code no gate takes)."""
    direction = place.direction if place.direction != "both" else "entry"
    return FareResult("stop", direction, (reason,), sign, None, None, row, (),
                      {"total": (time.perf_counter() - t0) * 1000}, place.station, place.gate_id)


class TransitTaps:
    """Cards and codes at one terminal's gates, decided through `FarePayments.charge_fare`."""

    def __init__(self, payments: Payments, cards: CardPayments, table: fares.FareTable,
                 policy: gaterules.GatePolicy) -> None:
        self.payments = payments
        self.fares = FarePayments(payments)
        self.cards = cards
        self.table = table
        self.policy = policy
        self.nominal = Money(table.max_fare, payments.currency)  # what the card is asked to allow

    def tap_card(self, transport: ApduTransport, place: GatePlace, *, started: float | None = None) -> FareResult:
        t0 = started if started is not None else time.perf_counter()
        try:
            card = self.cards.prepare(transport, self.nominal)
        except CardRemovedError:
            return refusal(place, "card_removed", "tap_again", t0)
        except ReaderUnavailableError:
            return refusal(place, "reader_unavailable", "tap_again", t0)
        except CardError as exc:
            log.info("card not read at the gate: %s (%s)", exc.message, exc.outcome)
            return refusal(place, exc.outcome, "tap_again" if exc.outcome == "tap_again" else "card_not_accepted",
                           t0)
        except StorageError as exc:
            log.error("tap refused, cannot record: %s", exc.message)
            return refusal(place, STORAGE_FAILURE, "see_staff", t0)
        t_card = (time.perf_counter() - t0) * 1000
        request = card.request
        tap = FareTap(place.gate_id, place.station, place.direction, method="card", expiry=request.expiry,
                      card_declined=request.card_declined)
        result = self.fares.charge_fare(tap, card.facts, self.table, self.policy, started=t0)
        return _with_card_time(result, t_card)

    def tap_code(self, text: str, place: GatePlace, *, started: float | None = None) -> FareResult:
        t0 = started if started is not None else time.perf_counter()
        kind = qrpay.kind_of(text, self.payments.config.qr.numeric_prefixes)
        if kind is not CodeKind.WALLET_SIGNED:
            # the other codes need the backend (numeric, consumer-presented) or are no payer's
            return refusal(place, "code_not_accepted_at_gate", "card_not_accepted", t0)
        try:
            payment = codepay.prepare_code_payment(self.payments, text, self.nominal)
        except QrPayloadError as exc:
            return self._code_refused(text, place, exc, t0)
        except StorageError:
            return refusal(place, STORAGE_FAILURE, "see_staff", t0)
        tier = payment.request.wallet_tier
        tap = FareTap(place.gate_id, place.station, place.direction, method=payment.request.method.value,
                      concession=tier.value if tier is not None else None)
        return self.fares.charge_fare(tap, payment.facts, self.table, self.policy, claim=payment.claim,
                                         started=t0)

    def _code_refused(self, text: str, place: GatePlace, exc: QrPayloadError, t0: float) -> FareResult:
        """A signed wallet code that failed its checks: journaled as a declined fare row."""
        details: dict[str, Any] = {"code_kind": CodeKind.WALLET_SIGNED.value, "code_problem": exc.reason,
                                   "station": place.station, "gate": place.gate_id,
                                   "gate_direction": place.direction}
        try:
            code = qrpay.parse_wallet_code(text)
            details.update(key_id=code.key_id, claimed_wallet_id=code.wallet_id, code_counter=code.counter)
        except QrPayloadError:
            pass
        payments = self.payments
        try:
            row = payments.require_journal().txns.append(
                NewTransaction(kind="fare", amount=Money(0, payments.currency), method="wallet_signed",
                               decision="declined", reasons=(exc.reason,), auth_mode="none", scheme="wallet",
                               details=details),
                now=payments.clock(), business_date=payments.business_date())
        except StorageError:
            return refusal(place, STORAGE_FAILURE, "see_staff", t0)
        return refusal(place, exc.reason, "card_not_accepted", t0, row)


def _with_card_time(result: FareResult, card_ms: float) -> FareResult:
    return replace(result, timings_ms={**result.timings_ms, "card": round(card_ms, 3)})


__all__ = ["GatePlace", "TransitTaps", "check_fare_table", "fare_table_path", "gate_policy", "load_fare_table",
           "refusal"]
