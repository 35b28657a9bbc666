"""The fare engine (terminal/core/fares.py): every rule and its boundaries, table by table, and
properties over generated tap sequences (never more than the caps, never charged twice for a tap)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.core import fares
from terminal.core.fares import CardState, FareTableError, Tap, apply_tap, parse_fare_table, price_card

ROOT = Path(__file__).resolve().parents[2]

# A small distance table: A at 0 m, B at 5 km, C at 9 km, D at 30 km. Bands: <= 6 km 3.00, <= 16 km
# 4.00, then +1.00 per 10 km started. Peak 07:00-09:30 on weekdays, off-peak 50%. Transfers free
# within 30 minutes at another station (once). Caps 10.00 a day, 35.00 a week. Service day from
# 04:00, week from Monday, UTC (local = UTC).
TABLE = """
[fares]
id = "t"
version = 2
currency = "CNY"
kind = "distance"
timezone = "UTC"
day_starts_at = "04:00"
max_journey_minutes = 60
max_fare = "6.00"

[fares.distance]
bands = [{ up_to_m = 6000, fare = "3.00" }, { up_to_m = 16000, fare = "4.00" }]
beyond_every_m = 10000
beyond_add = "1.00"

[fares.off_peak]
percent = 50

[[fares.peak]]
days = ["mon", "tue", "wed", "thu", "fri"]
from = "07:00"
to = "09:30"

[fares.transfer]
window_minutes = 30
percent_off = 100
max_transfers = 1

[fares.caps]
daily = "10.00"
weekly = "35.00"

[fares.concessions.student]
percent = 50

[fares.concessions.senior]
percent = 0
daily_cap = "0.00"

[stations.A]
position_m = 0
[stations.B]
position_m = 5000
[stations.C]
position_m = 9000
[stations.D]
position_m = 30000
"""
T = parse_fare_table(TABLE, "test")
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday


def at(hh: int, mm: int = 0, day: int = 0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hh, minutes=mm)


_ids = iter(range(10**9))


def tap(station: str, direction: str, when: datetime, concession: str | None = None) -> Tap:
    return Tap(f"t{next(_ids)}", when, when.replace(tzinfo=None), station, direction, concession)  # type: ignore[arg-type]


def ride(state: CardState, taps: list[Tap], view: fares.View = "network") -> tuple[list[int], CardState]:
    charged = []
    for t in taps:
        result = apply_tap(T, state, t, view=view)
        charged.append(result.charged)
        state = result.state
    return charged, state


# -- prices ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b", "fare"), [
    ("A", "A", 300), ("A", "B", 300),  # 5 km: first band
    ("A", "C", 400), ("B", "C", 300),  # 9 km, 4 km
    ("A", "D", 600),  # 30 km: 16 km + 14 km -> two steps of 10 km started
])
def test_distance_fares_by_band(a, b, fare):
    assert fares.base_fare(T, a, b) == fare == fares.base_fare(T, b, a)


@pytest.mark.parametrize(("metres", "fare"), [(0, 300), (6000, 300), (6001, 400), (16000, 400), (16001, 500),
                                              (26000, 500), (26001, 600)])
def test_band_boundaries_are_inclusive(metres, fare):
    assert fares.table._distance_fare(metres, T.distance_bands, T.beyond_every_m, T.beyond_add) == fare


@pytest.mark.parametrize(("when", "peak"), [
    (at(6, 59), False), (at(7, 0), True), (at(9, 29), True), (at(9, 30), False),
    (at(8, 0, day=5), False),  # Saturday
])
def test_peak_windows(when, peak):
    assert fares.is_peak(T, when.replace(tzinfo=None)) is peak


def test_off_peak_pays_the_percent_of_the_peak_fare():
    charged, _ = ride(CardState(), [tap("A", "entry", at(8)), tap("C", "exit", at(8, 20))])
    assert charged == [0, 400]
    charged, _ = ride(CardState(), [tap("A", "entry", at(10)), tap("C", "exit", at(10, 20))])
    assert charged == [0, 200]


def test_the_peak_is_decided_by_the_tap_in():
    charged, _ = ride(CardState(), [tap("A", "entry", at(9, 20)), tap("C", "exit", at(9, 45))])
    assert charged[1] == 400


@pytest.mark.parametrize(("local", "day"), [
    (datetime(2026, 11, 24, 3, 59), date(2026, 11, 23)),
    (datetime(2026, 11, 24, 4, 0), date(2026, 11, 24)),
])
def test_service_day_starts_at_day_starts_at(local, day):
    assert fares.service_day(T, local) == day


def test_weeks_start_on_monday():
    assert fares.week_of(T, date(2026, 11, 29)) == date(2026, 11, 23)
    assert fares.week_of(T, date(2026, 11, 30)) == date(2026, 11, 30)


# -- pairing and incomplete journeys -------------------------------------------------------------------

def test_tap_in_then_tap_out_charges_at_the_tap_out():
    taps = [tap("A", "entry", at(8)), tap("D", "exit", at(8, 50))]
    charged, state = ride(CardState(), taps)
    assert charged == [0, 600]
    assert state.open is None and state.day_charged == 600


@pytest.mark.parametrize(("minutes", "charged"), [(60, [0, 400]), (61, [0, 1000])])
def test_maximum_journey_time(minutes, charged):
    """Past max_journey_minutes the tap-in is incomplete (6.00) and the tap-out has no tap-in (6.00):
    12.00, capped at the day's 10.00."""
    got, _ = ride(CardState(), [tap("A", "entry", at(8)), tap("C", "exit", at(8) + timedelta(minutes=minutes))])
    assert got == charged


def test_second_tap_in_charges_the_open_journey_the_maximum_fare():
    got, state = ride(CardState(), [tap("A", "entry", at(8)), tap("B", "entry", at(8, 10)),
                                    tap("C", "exit", at(8, 20))])
    assert got == [0, 600, 300]  # 6.00 max fare for the journey from A, then B->C 3.00
    assert state.day_charged == 900


def test_tap_out_without_tap_in_is_the_maximum_fare():
    got, _ = ride(CardState(), [tap("C", "exit", at(8))])
    assert got == [600]


def test_a_journey_left_open_is_settled_when_it_can_no_longer_end():
    taps = [tap("A", "entry", at(8))]
    priced = price_card(T, taps, now=at(8, 30), now_local=at(8, 30).replace(tzinfo=None))
    assert priced.total == 0 and priced.in_progress is not None
    priced = price_card(T, taps, now=at(9, 1), now_local=at(9, 1).replace(tzinfo=None))
    assert priced.total == 600 and priced.in_progress is None
    assert priced.days[0].charges[0].kind == "incomplete_no_exit"


def test_gate_view_leaves_incomplete_journeys_to_the_back_office():
    got, state = ride(CardState(), [tap("A", "entry", at(8)), tap("B", "entry", at(8, 10)),
                                    tap("C", "exit", at(8, 20)), tap("D", "exit", at(8, 30))], view="gate")
    assert got == [0, 0, 300, 0]
    assert state.day_charged == 300
    result = apply_tap(T, CardState(), tap("C", "exit", at(8)), view="gate")
    assert result.charges[0].deferred and result.charges[0].kind == "incomplete_no_entry"


def test_two_way_gate_resolves_the_direction_from_the_journey():
    taps = [tap("A", "both", at(8)), tap("C", "both", at(8, 20)), tap("C", "both", at(8, 40))]
    state = CardState()
    directions = []
    for t in taps:
        result = apply_tap(T, state, t)
        directions.append(result.direction)
        state = result.state
    assert directions == ["entry", "exit", "entry"]


# -- transfers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("gap", "station", "second"), [
    (30, "C", 0),  # within the window, another station: free
    (31, "C", 300),  # window passed
    (10, "B", 500),  # at the station it ended at: a new journey (B->D, 25 km), not a transfer
])
def test_transfers(gap, station, second):
    first = [tap("A", "entry", at(8)), tap("B", "exit", at(8, 10))]
    end = at(8, 10) + timedelta(minutes=gap)
    dest = "D" if station == "B" else "B"
    got, _ = ride(CardState(), [*first, tap(station, "entry", end), tap(dest, "exit", end + timedelta(minutes=5))])
    assert got[1] == 300 and got[3] == second


def test_only_max_transfers_in_a_row():
    taps = [tap("A", "entry", at(8)), tap("B", "exit", at(8, 5)), tap("C", "entry", at(8, 10)),
            tap("A", "exit", at(8, 15)), tap("B", "entry", at(8, 20)), tap("C", "exit", at(8, 25))]
    got, _ = ride(CardState(), taps)
    assert got == [0, 300, 0, 0, 0, 300]


# -- capping ---------------------------------------------------------------------------------------------

def test_daily_cap_charges_what_is_left_then_nothing():
    taps = []
    for i in range(5):  # 45 minutes apart (no transfers); 4.00 each at peak, 10.00 cap: 4, 4, 2, 0, 0
        taps += [tap("A", "entry", at(7, 0 + 45 * i)), tap("C", "exit", at(7, 10 + 45 * i))]
    got, state = ride(CardState(), taps)
    assert got[1::2] == [400, 400, 200, 0, 0]
    assert state.day_charged == 1000


def test_the_daily_cap_starts_again_on_the_next_service_day():
    taps = [tap("A", "entry", at(8)), tap("D", "exit", at(8, 30)), tap("A", "entry", at(9, 5)),
            tap("D", "exit", at(9, 25)), tap("A", "entry", at(8, day=1)), tap("D", "exit", at(8, 30, day=1))]
    got, _ = ride(CardState(), taps)
    assert got[1::2] == [600, 400, 600]


def test_weekly_cap():
    taps = []
    for day in range(5):  # 10.00 a day Monday to Friday: the week caps at 35.00
        for i in range(3):
            taps += [tap("A", "entry", at(7, 45 * i, day)), tap("D", "exit", at(7, 10 + 45 * i, day))]
    got, state = ride(CardState(), taps)
    per_day = [sum(got[d * 6:(d + 1) * 6]) for d in range(5)]
    assert per_day == [1000, 1000, 1000, 500, 0]
    assert state.week_charged == 3500


def test_capping_is_min_of_fare_and_what_is_left():
    state = CardState(day=date(2026, 11, 23), day_charged=850, week=date(2026, 11, 23), week_charged=850)
    result = apply_tap(T, replace_open(state, "A", at(8)), tap("D", "exit", at(8, 30)))
    assert result.charged == 150 and result.charges[0].capped == "daily"


def replace_open(state: CardState, station: str, when: datetime) -> CardState:
    from dataclasses import replace

    return replace(state, open=fares.OpenJourney("o", when, when.replace(tzinfo=None), station,
                                                 fares.service_day(T, when.replace(tzinfo=None))))


# -- concessions -----------------------------------------------------------------------------------------

def test_concession_pays_its_percent_and_its_caps():
    got, _ = ride(CardState(), [tap("A", "entry", at(8), "student"), tap("D", "exit", at(8, 30))])
    assert got == [0, 300]
    assert fares.caps_for(T, "student") == (500, 1750)
    assert fares.caps_for(T, "senior") == (0, 0)
    got, _ = ride(CardState(), [tap("A", "entry", at(8), "senior"), tap("D", "exit", at(8, 30))])
    assert got == [0, 0]
    assert fares.caps_for(T, "unknown") == (1000, 3500)


# -- flat tables -----------------------------------------------------------------------------------------

def test_flat_fare_is_paid_at_the_tap_in_with_a_free_transfer():
    table = parse_fare_table((ROOT / "config" / "fares-flat.toml").read_text(), "flat")
    state, got = CardState(), []
    for t in [tap("TSQ", "entry", at(8)), tap("FUL", "exit", at(8, 20)), tap("FUL", "entry", at(8, 30)),
              tap("BUS1", "entry", at(9)), tap("TSQ", "entry", at(12))]:
        result = apply_tap(table, state, t)
        got.append(result.charged)
        state = result.state
    assert got == [290, 0, 0, 290, 290]  # the transfer is free once; the exit tap charges nothing


def test_zone_table_prices_by_zone_pair():
    table = parse_fare_table((ROOT / "config" / "fares-zones.toml").read_text(), "zones")
    assert fares.base_fare(table, "BNK", "WIM") == 370
    assert fares.base_fare(table, "CAM", "WIM") == 200
    got = apply_tap(table, CardState(day=None), tap("BNK", "entry", at(12))).state
    result = apply_tap(table, got, tap("WIM", "exit", at(12, 30)))
    assert result.charged == 370 * 85 // 100  # off-peak


# -- the table format --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fares-metro.toml", "fares-zones.toml", "fares-flat.toml"])
def test_the_shipped_tables_parse(name):
    table = parse_fare_table((ROOT / "config" / name).read_text(), name)
    assert table.stations and table.max_fare > 0


@pytest.mark.parametrize(("change", "message"), [
    (("kind = \"distance\"", "kind = \"bus\""), "kind"),
    (("max_fare = \"6.00\"", "max_fare = \"1.00\""), "max_fare"),
    (("max_fare = \"6.00\"", "max_fare = 6.0"), "floats are not accepted"),
    (("percent = 50\n\n[[", "percent = 150\n\n[["), "percent"),
    (("from = \"07:00\"", "from = \"7am\""), "HH:MM"),
    (("[stations.D]", "[stations.D]\nlane = 3"), "unknown key"),
    (("version = 2", "version = 0"), "version"),
    (("currency = \"CNY\"", "currency = \"XYZ\""), "currency"),
])
def test_bad_tables_name_the_key(change, message):
    with pytest.raises(FareTableError, match=message):
        parse_fare_table(TABLE.replace(*change, 1), "bad.toml")


def test_zone_table_needs_every_pair_its_stations_use():
    text = (ROOT / "config" / "fares-zones.toml").read_text().replace('"2-3" = "2.00"\n', "")
    with pytest.raises(FareTableError, match="2-3"):
        parse_fare_table(text, "zones")


def test_state_round_trips_through_plain_values():
    _, state = ride(CardState(), [tap("A", "entry", at(8)), tap("B", "exit", at(8, 5)), tap("C", "entry", at(8, 9))])
    assert CardState.from_plain(state.to_plain()) == state


# -- properties --------------------------------------------------------------------------------------------

STATIONS = ["A", "B", "C", "D"]
tap_steps = st.lists(st.tuples(st.integers(0, 400), st.sampled_from(STATIONS),
                               st.sampled_from(["entry", "exit", "both"]),
                               st.sampled_from([None, None, "student"])), min_size=1, max_size=40)


def build(steps) -> list[Tap]:
    when = at(5)
    out = []
    for i, (gap, station, direction, concession) in enumerate(steps):
        when += timedelta(minutes=gap)
        # ids sort in the order the taps were made, as the terminal's time-ordered ids do: the batch
        # breaks a tie in time (gap 0) by the id, the gate by the order the taps came
        out.append(Tap(f"p{i:04d}", when, when.replace(tzinfo=None), station, direction, concession))
    return out


@settings(max_examples=300, deadline=None)
@given(tap_steps, st.sampled_from(["gate", "network"]))
def test_never_more_than_the_caps(steps, view):
    taps = build(steps)
    priced = price_card(T, taps, now=taps[-1].at + timedelta(days=1), now_local=(taps[-1].at + timedelta(days=1))
                        .replace(tzinfo=None), view=view)
    weeks: dict[date, int] = {}
    for day in priced.days:
        assert day.total <= T.daily_cap
        weeks[fares.week_of(T, day.day)] = weeks.get(fares.week_of(T, day.day), 0) + day.total
        for charge in day.charges:
            assert 0 <= charge.charged <= charge.fare
    assert all(total <= T.weekly_cap for total in weeks.values())


@settings(max_examples=300, deadline=None)
@given(tap_steps)
def test_never_charged_twice_for_one_tap(steps):
    taps = build(steps)
    later = taps[-1].at + timedelta(days=1)
    priced = price_card(T, taps, now=later, now_local=later.replace(tzinfo=None))
    charged_taps = [c.tap_id for d in priced.days for c in d.charges]
    assert len(charged_taps) == len(set(charged_taps))
    # the same taps delivered twice (a batch uploaded again) price the same
    again = price_card(T, taps + taps[::-1], now=later, now_local=later.replace(tzinfo=None))
    assert again == priced


@settings(max_examples=200, deadline=None)
@given(tap_steps)
def test_folding_one_tap_at_a_time_is_the_batch_price(steps):
    """What a gate computes tap by tap (state kept between taps) is what the back office computes
    from the same taps at once."""
    taps = build(steps)
    state, total = CardState(), 0
    for t in taps:
        result = apply_tap(T, CardState.from_plain(state.to_plain()), t)
        total += result.charged
        state = result.state
    last = taps[-1].at
    assert price_card(T, taps, now=last, now_local=last.replace(tzinfo=None)).total == total
