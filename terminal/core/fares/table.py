"""Fare tables, pure: the table's types, `parse_fare_table` (TOML text, checked field by field) and
the prices a table gives (service day, peak, base fare by zone or distance, concessions and caps).
See `terminal.core.fares` for the fare rules as a whole."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from terminal.core.money import Currency, currency, parse_amount
from terminal.errors import ConfigError, MoneyError

FareKind = Literal["flat", "zone", "distance"]
Direction = Literal["entry", "exit", "both"]
View = Literal["gate", "network"]
ChargeKind = Literal["flat", "journey", "incomplete_no_exit", "incomplete_no_entry"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = {"monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6}
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_KINDS: dict[str, FareKind] = {"flat": "flat", "zone": "zone", "distance": "distance"}


class FareTableError(ConfigError):
    """A fare table that cannot be used: says the file, the key and what is allowed."""

    title = "Fare table error"


# ------------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True, slots=True)
class Station:
    id: str
    name: str
    zone: int = 1
    position_m: int = 0  # where the station lies along its line, in metres (distance tables)


@dataclass(frozen=True, slots=True)
class PeakWindow:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after local midnight, inclusive
    end: int  # exclusive

    def covers(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return local.weekday() in self.days and self.start <= minute < self.end


@dataclass(frozen=True, slots=True)
class DistanceBand:
    up_to_m: int  # inclusive
    fare: int


@dataclass(frozen=True, slots=True)
class Concession:
    name: str
    percent: int  # of the full fare the passenger pays
    daily_cap: int | None = None  # None: the table's cap scaled by `percent`
    weekly_cap: int | None = None


@dataclass(frozen=True, slots=True)
class FareTable:
    id: str
    version: int
    currency: Currency
    kind: FareKind
    timezone: str
    stations: Mapping[str, Station]
    max_fare: int
    max_journey_minutes: int = 120
    flat_fare: int = 0
    zone_fares: Mapping[tuple[int, int], int] = field(default_factory=dict)
    distance_bands: tuple[DistanceBand, ...] = ()
    beyond_every_m: int = 0
    beyond_add: int = 0
    distance_pairs: Mapping[tuple[str, str], int] = field(default_factory=dict)
    off_peak_percent: int = 100
    peak: tuple[PeakWindow, ...] = ()
    transfer_minutes: int = 0
    transfer_percent_off: int = 0
    max_transfers: int = 0
    daily_cap: int | None = None
    weekly_cap: int | None = None
    week_start: int = 0
    day_start: int = 0  # minutes after local midnight when the service day begins
    concessions: Mapping[str, Concession] = field(default_factory=dict)

    @property
    def tap_out(self) -> bool:
        """Journeys end with a tap-out (zone and distance tables); a flat fare is paid at the tap-in."""
        return self.kind != "flat"

    @property
    def label(self) -> str:
        return f"{self.id}@{self.version}"

    def station(self, station_id: str) -> Station:
        try:
            return self.stations[station_id]
        except KeyError:
            raise FareTableError(f"fare table {self.label}: no station {station_id!r}") from None


def _fail(source: str, where: str, message: str) -> FareTableError:
    return FareTableError(f"fare table {source}: {where}: {message}")


class _Reader:
    """Typed access to one TOML table, with errors that name the key."""

    def __init__(self, source: str, path: str, data: Mapping[str, Any], cur: Currency | None) -> None:
        self.source, self.path, self.data, self.cur = source, path, data, cur
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"[{self.path}] {key}" if self.path else key

    def fail(self, key: str, message: str) -> FareTableError:
        return _fail(self.source, self.where(key), message)

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def text(self, key: str, default: str | None = None, pattern: re.Pattern[str] | None = None,
             allowed: str = "") -> str:
        value = self.raw(key)
        if value is None:
            if default is None:
                raise self.fail(key, "is required")
            return default
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise self.fail(key, f"expected {allowed or 'a string'}, got {value!r}")
        return value

    def whole(self, key: str, default: int | None = None, *, low: int = 0, high: int = 10**9) -> int:
        value = self.raw(key)
        if value is None:
            if default is None:
                raise self.fail(key, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"expected a whole number from {low} to {high}, got {value!r}")
        return value

    def amount(self, key: str, *, required: bool = True) -> int | None:
        value = self.raw(key)
        if value is None:
            if required:
                raise self.fail(key, 'is required (an amount as a string, e.g. "3.00")')
            return None
        if isinstance(value, float):
            raise self.fail(key, f'floats are not accepted, got {value!r}; write the amount as a string, e.g. "3.00"')
        if not isinstance(value, str):
            raise self.fail(key, f'expected an amount as a string, e.g. "3.00", got {value!r}')
        assert self.cur is not None
        try:
            return parse_amount(value, self.cur, allow_zero=True).minor
        except MoneyError as exc:
            raise self.fail(key, str(exc)) from None

    def table(self, key: str) -> _Reader | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(key, "expected a table")
        return _Reader(self.source, f"{self.path}.{key}" if self.path else key, value, self.cur)

    def tables(self, key: str) -> list[_Reader]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(key, "expected an array of tables ([[...]])")
        path = f"{self.path}.{key}" if self.path else key
        return [_Reader(self.source, f"{path}[{i}]", v, self.cur) for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


def _minutes(reader: _Reader, key: str, default: str | None = None) -> int:
    text = reader.text(key, default, _TIME, "a time of day as HH:MM, e.g. \"07:30\"")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def parse_fare_table(text: str, source: str = "<fare table>") -> FareTable:
    """A fare table from its TOML text (see the module docstring and README.md); `source` names
    the file in error messages. Raises FareTableError for anything it cannot use."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FareTableError(f"fare table {source}: not valid TOML: {exc}") from None
    top = _Reader(source, "", data, None)
    fares = top.table("fares")
    if fares is None:
        raise _fail(source, "[fares]", "is required")
    code = fares.text("currency", pattern=re.compile(r"[A-Z]{3}"), allowed="an ISO 4217 code such as CNY")
    try:
        cur = currency(code)
    except MoneyError as exc:
        raise fares.fail("currency", str(exc)) from None
    fares.cur = cur
    top.cur = cur
    kind = fares.text("kind", pattern=re.compile(r"flat|zone|distance"), allowed='"flat", "zone" or "distance"')
    stations = _stations(top, cur)
    if not stations:
        raise _fail(source, "[stations]", "at least one station is required")
    fare_id = fares.text("id", pattern=_ID, allowed="1-32 of A-Z a-z 0-9 _ . -")
    version = fares.whole("version", low=1)
    timezone = fares.text("timezone", "UTC", re.compile(r"[A-Za-z0-9_+/-]{1,64}"), "an IANA time zone name")
    max_journey = fares.whole("max_journey_minutes", 120, low=1, high=24 * 60)
    day_start = _minutes(fares, "day_starts_at", "00:00")
    week_name = fares.text("week_starts_on", "monday", re.compile("|".join(DAY_NAMES)), "a weekday name")
    flat = 0
    zone_fares: dict[tuple[int, int], int] = {}
    bands: list[DistanceBand] = []
    every = add = 0
    pairs: dict[tuple[str, str], int] = {}
    if kind == "flat":
        flat = fares.amount("flat_fare") or 0
    elif kind == "zone":
        zones = fares.table("zones")
        if zones is None:
            raise fares.fail("zones", 'is required for kind = "zone" (e.g. "1-2" = "3.50")')
        for key in list(zones.data):
            match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", key)
            if not match:
                raise zones.fail(key, 'zone pairs are written "1-2"')
            a, b = sorted((int(match.group(1)), int(match.group(2))))
            fare = zones.amount(key)
            assert fare is not None
            zone_fares[(a, b)] = fare
        used = {s.zone for s in stations.values()}
        for a in used:
            for b in used:
                if (min(a, b), max(a, b)) not in zone_fares:
                    raise zones.fail(f"{min(a, b)}-{max(a, b)}", "missing: stations use both zones")
    else:
        distance = fares.table("distance")
        if distance is None:
            raise fares.fail("distance", "is required for kind = \"distance\"")
        for band in distance.tables("bands"):
            up_to = band.whole("up_to_m", low=0)
            amount = band.amount("fare")
            assert amount is not None
            band.done()
            if bands and (up_to <= bands[-1].up_to_m or amount < bands[-1].fare):
                raise band.fail("up_to_m", "bands must grow in distance and fare")
            bands.append(DistanceBand(up_to, amount))
        if not bands:
            raise distance.fail("bands", "at least one band is required")
        every = distance.whole("beyond_every_m", 0, low=0)
        add = distance.amount("beyond_add", required=False) or 0
        for pair in distance.tables("pairs"):
            one, two = pair.text("from"), pair.text("to")
            for key, sid in (("from", one), ("to", two)):
                if sid not in stations:
                    raise pair.fail(key, f"no station {sid!r}")
            pairs[(min(one, two), max(one, two))] = pair.whole("metres", low=0)
            pair.done()
        distance.done()
    off_peak = 100
    peaks: list[PeakWindow] = []
    section = fares.table("off_peak")
    if section is not None:
        off_peak = section.whole("percent", low=0, high=100)
        section.done()
    for window in fares.tables("peak"):
        days_raw = window.raw("days")
        if not isinstance(days_raw, list) or not days_raw or not all(d in DAYS for d in days_raw):
            raise window.fail("days", f"expected a list of {', '.join(DAYS)}")
        start, end = _minutes(window, "from"), _minutes(window, "to")
        if end <= start:
            raise window.fail("to", "must be later than from")
        window.done()
        peaks.append(PeakWindow(frozenset(DAYS.index(d) for d in days_raw), start, end))
    transfer_minutes = percent_off = max_transfers = 0
    section = fares.table("transfer")
    if section is not None:
        transfer_minutes = section.whole("window_minutes", low=0, high=24 * 60)
        percent_off = section.whole("percent_off", 100, low=0, high=100)
        max_transfers = section.whole("max_transfers", 1, low=0, high=20)
        section.done()
    daily = weekly = None
    section = fares.table("caps")
    if section is not None:
        daily = section.amount("daily", required=False)
        weekly = section.amount("weekly", required=False)
        section.done()
    concessions: dict[str, Concession] = {}
    section = fares.table("concessions")
    if section is not None:
        for name in list(section.data):
            item = section.table(name)
            assert item is not None
            if not _ID.fullmatch(name):
                raise section.fail(name, "a concession name is 1-32 of A-Z a-z 0-9 _ . -")
            concessions[name] = Concession(name, item.whole("percent", low=0, high=100),
                                           item.amount("daily_cap", required=False),
                                           item.amount("weekly_cap", required=False))
            item.done()
        section.done()
    largest = _largest_fare(kind, flat, zone_fares, bands, every, add, stations, pairs)
    max_fare = fares.amount("max_fare", required=False)
    if max_fare is None:
        max_fare = largest
    elif max_fare < largest:
        raise fares.fail("max_fare", "must be at least the largest journey fare in the table")
    fares.done()
    top.done()
    return FareTable(
        id=fare_id, version=version, currency=cur, kind=_KINDS[kind],
        timezone=timezone, stations=stations, max_fare=max_fare, max_journey_minutes=max_journey, flat_fare=flat,
        zone_fares=zone_fares, distance_bands=tuple(bands), beyond_every_m=every, beyond_add=add,
        distance_pairs=pairs, off_peak_percent=off_peak, peak=tuple(peaks), transfer_minutes=transfer_minutes,
        transfer_percent_off=percent_off, max_transfers=max_transfers, daily_cap=daily, weekly_cap=weekly,
        week_start=DAY_NAMES[week_name], day_start=day_start, concessions=concessions)


def _stations(top: _Reader, cur: Currency) -> dict[str, Station]:
    section = top.table("stations")
    out: dict[str, Station] = {}
    if section is None:
        return out
    for sid in list(section.data):
        item = section.table(sid)
        assert item is not None
        if not _ID.fullmatch(sid):
            raise section.fail(sid, "a station id is 1-32 of A-Z a-z 0-9 _ . -")
        out[sid] = Station(sid, item.text("name", sid), item.whole("zone", 1, low=1, high=99),
                           item.whole("position_m", 0, low=0, high=10**7))
        item.done()
    section.done()
    return out


def _largest_fare(kind: str, flat: int, zones: Mapping[tuple[int, int], int], bands: Sequence[DistanceBand],
                  every: int, add: int, stations: Mapping[str, Station],
                  pairs: Mapping[tuple[str, str], int]) -> int:
    if kind == "flat":
        return flat
    if kind == "zone":
        return max(zones.values(), default=0)
    positions = [s.position_m for s in stations.values()]
    longest = max([max(positions) - min(positions), *pairs.values()]) if positions else 0
    return _distance_fare(longest, bands, every, add)


def _distance_fare(metres: int, bands: Sequence[DistanceBand], every: int, add: int) -> int:
    for band in bands:
        if metres <= band.up_to_m:
            return band.fare
    last = bands[-1]
    if every <= 0:
        return last.fare
    steps = -(-(metres - last.up_to_m) // every)  # ceiling: each started step adds
    return last.fare + steps * add


# ------------------------------------------------------------------------------------------------
# prices


def service_day(table: FareTable, local: datetime) -> date:
    """The service day a local wall time belongs to (it starts at `day_starts_at`)."""
    return (local - timedelta(minutes=table.day_start)).date()


def week_of(table: FareTable, day: date) -> date:
    """The first service day of the capping week `day` is in."""
    return day - timedelta(days=(day.weekday() - table.week_start) % 7)


def is_peak(table: FareTable, local: datetime) -> bool:
    return any(w.covers(local) for w in table.peak)


def distance_m(table: FareTable, a: str, b: str) -> int:
    explicit = table.distance_pairs.get((min(a, b), max(a, b)))
    if explicit is not None:
        return explicit
    return abs(table.station(a).position_m - table.station(b).position_m)


def base_fare(table: FareTable, origin: str | None, destination: str | None) -> int:
    """The full (peak, adult) fare between two stations; the flat fare for a flat table."""
    if table.kind == "flat":
        return table.flat_fare
    if origin is None or destination is None:
        return table.max_fare
    if table.kind == "zone":
        a, b = sorted((table.station(origin).zone, table.station(destination).zone))
        return table.zone_fares[(a, b)]
    return _distance_fare(distance_m(table, origin, destination), table.distance_bands, table.beyond_every_m,
                          table.beyond_add)


def _percent(amount: int, percent: int) -> int:
    return amount * percent // 100


def concession_of(table: FareTable, name: str | None) -> Concession | None:
    return table.concessions.get(name) if name else None


def caps_for(table: FareTable, concession: str | None) -> tuple[int | None, int | None]:
    """(daily cap, weekly cap) for a passenger with `concession`."""
    c = concession_of(table, concession)
    if c is None:
        return table.daily_cap, table.weekly_cap
    daily = c.daily_cap if c.daily_cap is not None else (
        _percent(table.daily_cap, c.percent) if table.daily_cap is not None else None)
    weekly = c.weekly_cap if c.weekly_cap is not None else (
        _percent(table.weekly_cap, c.percent) if table.weekly_cap is not None else None)
    return daily, weekly
