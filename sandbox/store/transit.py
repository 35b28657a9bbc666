"""The transit back office (Visa MTT / Mastercard transit model): every gate's signed fare rows are
taps; the back office pairs them across gates and stations, applies the network-wide daily and weekly
caps (a gate only sees its own taps) and produces one daily charge per card, with its journeys.

A fare row becomes a tap when it is stored (accepted, or declined after offline approval: the
passenger rode either way) and the gate let the passenger through. The fare table is the network's
(`PUT /admin/transit/fare-table`); the pricing is the terminal's own pure fare engine
(`terminal.core.fares`) in its `network` view: a tap-in never ended is the maximum fare once its
journey can no longer end, a tap-out without a tap-in too. A gate's "today's total" is its own view;
the figure here is the one charged.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from terminal.core import fares
from terminal.errors import ConfigError
from terminal.journal import utc_text

from ..errors import Refused
from .database import Database

META_FARE_TABLE = "transit_fare_table"


def tap_row(terminal_id: str, record: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The tap a stored journal record is, as a `transit_taps` row (None for anything else)."""
    if record.get("kind") != "fare" or record.get("decision") != "approved" or not record.get("card_token"):
        return None
    details = record.get("details") if isinstance(record.get("details"), dict) else {}
    assert isinstance(details, dict)
    station = details.get("station")
    if not isinstance(station, str):
        return None
    gate_direction = details.get("gate_direction") or details.get("direction") or "both"
    concession = details.get("concession") if isinstance(details.get("concession"), str) else None
    return (terminal_id, record["id"], record["card_token"], record["created_at"], station,
            str(gate_direction), str(details.get("gate") or ""), record["amount"], concession)


class Transit:
    def __init__(self, db: Database):
        self.db = db

    # -- taps ---------------------------------------------------------------------------------------

    def record_in(self, db: sqlite3.Connection, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Store the taps among newly stored journal records (inside the upload's transaction)."""
        taps = [t for t in (tap_row(terminal_id, rec) for terminal_id, rec in rows) if t is not None]
        db.executemany(
            "INSERT OR IGNORE INTO transit_taps (terminal_id, id, card_token, at, station, gate_direction, gate, "
            "gate_amount, concession) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", taps)
        return len(taps)

    def taps(self, card_token: str, first: datetime, last: datetime) -> list[dict[str, Any]]:
        rows = self.db.all(
            "SELECT terminal_id, id, at, station, gate_direction, gate, gate_amount, concession FROM transit_taps "
            "WHERE card_token = ? AND at >= ? AND at < ? ORDER BY at, id",
            (card_token, _utc(first), _utc(last)))
        return [{"terminal_id": t, "id": i, "at": at, "station": s, "gate_direction": d, "gate": g,
                 "gate_amount": a, "concession": c} for t, i, at, s, d, g, a, c in rows]

    def cards_on(self, first: datetime, last: datetime) -> list[str]:
        return [r[0] for r in self.db.all("SELECT DISTINCT card_token FROM transit_taps WHERE at >= ? AND at < ? "
                                          "ORDER BY card_token", (_utc(first), _utc(last)))]

    # -- the fare table -----------------------------------------------------------------------------

    def set_fare_table(self, text: str) -> fares.FareTable:
        try:
            table = fares.parse_fare_table(text, "the uploaded fare table")
            ZoneInfo(table.timezone)
        except ConfigError as exc:
            raise Refused(422, "invalid_fare_table", exc.message) from None
        except (ValueError, KeyError):
            raise Refused(422, "invalid_fare_table", "the fare table's timezone is not an IANA time zone") from None
        with self.db.transaction() as db:
            self.db.set_meta(db, META_FARE_TABLE, text)
        return table

    def fare_table(self) -> fares.FareTable:
        text = self.db.meta(META_FARE_TABLE)
        if not text:
            raise Refused(409, "no_fare_table", "the back office has no fare table yet")
        return fares.parse_fare_table(text, "the back office's fare table")

    # -- journeys and the daily charge ----------------------------------------------------------------

    def _window(self, table: fares.FareTable, day: date) -> tuple[datetime, datetime]:
        """UTC bounds of the taps that can count towards `day`: from its capping week's first service
        day to the end of the day after it (a journey begun on `day` may end then)."""
        zone = ZoneInfo(table.timezone)
        start = datetime.combine(fares.week_of(table, day), datetime.min.time()) + timedelta(minutes=table.day_start)
        end = datetime.combine(day + timedelta(days=2), datetime.min.time()) + timedelta(minutes=table.day_start)
        return start.replace(tzinfo=zone).astimezone(UTC), end.replace(tzinfo=zone).astimezone(UTC)

    def day_charge(self, card_token: str, day: date) -> dict[str, Any]:
        """A card's journeys of one service day and what it is charged for them (network-wide)."""
        table = self.fare_table()
        zone = ZoneInfo(table.timezone)
        try:
            first, last = self._window(table, day)
        except OverflowError:  # a day at the very end of the calendar: no tap can be there
            first = last = datetime.now(UTC)
        stored = self.taps(card_token, first, last) if first < last else []
        known = {t["id"]: t for t in stored}
        taps = [_tap(t, zone) for t in stored]
        now = self.db.now()
        priced = fares.price_card(table, taps, now=now, now_local=now.astimezone(zone).replace(tzinfo=None))
        charges = priced.day(day).charges
        week_total = sum(d.total for d in priced.days if d.day <= day and (day - d.day).days < 7
                         and fares.week_of(table, d.day) == fares.week_of(table, day))
        journeys = [_journey(c, known) for c in charges]
        open_ = priced.in_progress
        return {
            "card_token": card_token, "date": day.isoformat(), "currency": table.currency.alpha,
            "fare_table": table.label, "daily_charge": sum(c.charged for c in charges),
            "week_charged": week_total, "journeys": journeys,
            "in_progress": None if open_ is None or open_.day != day else {
                "entry_tap": open_.tap_id, "from": open_.station, "entered_at": known[open_.tap_id]["at"],
                "terminal_id": known[open_.tap_id]["terminal_id"]},
            "taps": [_tap_answer(t) for t in stored if fares.service_day(table, _local(t["at"], zone)) == day],
        }

    def day_taps(self, card_token: str, day: date) -> dict[str, Any]:
        answer = self.day_charge(card_token, day)
        return {"card_token": card_token, "date": answer["date"], "taps": answer["taps"]}

    def day_charges(self, day: date) -> dict[str, Any]:
        """Every card's daily charge for `day` (the batch the back office would send to the acquirer)."""
        table = self.fare_table()
        zone = ZoneInfo(table.timezone)
        start = datetime.combine(day, datetime.min.time()) + timedelta(minutes=table.day_start)
        first = start.replace(tzinfo=zone).astimezone(UTC)
        charges = [self.day_charge(token, day) for token in self.cards_on(first, first + timedelta(days=1))]
        return {"date": day.isoformat(), "currency": table.currency.alpha, "fare_table": table.label,
                "cards": [{"card_token": c["card_token"], "daily_charge": c["daily_charge"],
                           "journeys": len(c["journeys"])} for c in charges],
                "total": sum(c["daily_charge"] for c in charges)}


def _utc(moment: datetime) -> str:
    return utc_text(moment)


def _local(at: str, zone: ZoneInfo) -> datetime:
    return datetime.fromisoformat(at).astimezone(zone).replace(tzinfo=None)


def _tap(stored: Mapping[str, Any], zone: ZoneInfo) -> fares.Tap:
    at = datetime.fromisoformat(stored["at"]).astimezone(UTC)
    value = stored["gate_direction"]
    direction: fares.Direction = "entry" if value == "entry" else "exit" if value == "exit" else "both"
    return fares.Tap(stored["id"], at, at.astimezone(zone).replace(tzinfo=None), stored["station"], direction,
                     stored["concession"])


def _tap_answer(stored: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": stored["id"], "terminal_id": stored["terminal_id"], "at": stored["at"],
            "station": stored["station"], "gate": stored["gate"], "gate_direction": stored["gate_direction"],
            "gate_amount": stored["gate_amount"]}


def _journey(charge: fares.Charge, known: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    start = known.get(charge.tap_id) if charge.kind != "incomplete_no_entry" else None
    end = known.get(charge.ended_by or "") if charge.kind in ("journey", "incomplete_no_entry") else None
    return {"kind": charge.kind, "from": charge.origin, "to": charge.destination,
            "entry_tap": start["id"] if start else None, "exit_tap": end["id"] if end else None,
            "entered_at": start["at"] if start else None, "exited_at": end["at"] if end else None,
            "entry_terminal": start["terminal_id"] if start else None,
            "exit_terminal": end["terminal_id"] if end else None,
            "fare": charge.fare, "charged": charge.charged, "peak": charge.peak, "transfer": charge.transfer,
            "capped": charge.capped}


def parse_day(text: str | None) -> date:
    if text is None or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise Refused(422, "invalid_request", "date: a day as YYYY-MM-DD is required")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Refused(422, "invalid_request", f"date: {text} is not a day of the calendar") from None


__all__ = ["META_FARE_TABLE", "Transit", "parse_day", "tap_row"]
