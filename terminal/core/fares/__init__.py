"""Transit fares, pure: fare tables (TOML text), journeys from taps, peak and off-peak, transfers,
incomplete journeys, daily and weekly capping, concessions.

A fare table (`parse_fare_table`, format in README.md "Transit gate" and config/fares-*.toml) prices
a journey in one of three ways:

- `flat`: every journey costs the same; a journey is a tap-in (no tap-out needed);
- `zone`: a matrix of fares by the zones of the two stations (tap-in and tap-out);
- `distance`: fare bands by the distance between the two stations (tap-in and tap-out).

On top of that, all in integer minor units (`Money` is built by the callers from `table.currency`):

- peak / off-peak: a journey that starts outside the table's peak windows (local time, by weekday)
  pays `off_peak_percent` of the peak fare (rounded down);
- transfers: a journey that starts within `transfer_minutes` of the end of the previous one, at
  another station, pays `100 - transfer_percent_off` percent of its fare (100 off: free), at most
  `max_transfers` times in a row;
- concessions by wallet tier (or any concession name a wallet states): the passenger pays
  `percent` of the fare, and the concession's own caps (or the caps scaled by the same percent);
- incomplete journeys: a tap-in followed by another tap-in, a tap-in not ended by a tap-out within
  `max_journey_minutes` or by the end of its service day, and a tap-out without a tap-in are each
  charged `max_fare`;
- capping as TfL and OMNY do it: each charge is `min(fare, daily_cap - charged today, weekly_cap -
  charged this week)`, never below zero. The service day runs from `day_starts_at` (local) to the same
  time the next day; the week from `week_starts_on`.

Taps are folded into a per-card `CardState` one at a time (`apply_tap`): what a gate does with its
own taps, in O(1), and what the back office does with all of a card's taps across gates and stations
(`price_card`, which also closes journeys left open). Two views differ on what a single gate cannot
know: in the `gate` view an incomplete journey is left to the back office (charged nothing at the
gate, `deferred`), because the passenger may have tapped out at a gate whose taps this one never
sees; the `network` view, the back office's, charges it `max_fare`.
"""

from terminal.core.fares.journeys import (
    CardState,
    Charge,
    DayCharge,
    OpenJourney,
    PricedCard,
    Tap,
    TapResult,
    apply_tap,
    close_open,
    price_card,
    resolve_direction,
)
from terminal.core.fares.table import (
    DAYS,
    Concession,
    Direction,
    DistanceBand,
    FareKind,
    FareTable,
    FareTableError,
    PeakWindow,
    Station,
    View,
    base_fare,
    caps_for,
    distance_m,
    is_peak,
    parse_fare_table,
    service_day,
    week_of,
)

__all__ = [
    "DAYS", "CardState", "Charge", "Concession", "DayCharge", "Direction", "DistanceBand", "FareKind", "FareTable",
    "FareTableError", "OpenJourney", "PeakWindow", "PricedCard", "Station", "Tap", "TapResult", "View", "apply_tap",
    "base_fare", "caps_for", "close_open", "distance_m", "is_peak", "parse_fare_table", "price_card",
    "resolve_direction", "service_day", "week_of",
]
