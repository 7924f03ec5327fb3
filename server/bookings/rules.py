"""Pure booking rules (SPEC §4 Booking): dayparts, the local hours a booking covers, the
loop's capacity, and the price. No I/O.

Inventory is counted per local hour of a kiosk, keyed by the UTC instant the local hour
starts (models/booking.py). Expanding a date range and dayparts into those instants is the
one place local time matters: a daypart that crosses midnight belongs to the day it starts
on, an hour that DST skips does not exist, and an hour that DST repeats is two hours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from server.core.money import Fen
from server.kiosks.rules import VENUE_TYPES

#: Fen per spot per kiosk per day when an operator has set no price for a venue type:
#: busier venues cost more (metro exits and malls see the most people per hour).
DEFAULT_VENUE_PRICES: Final[dict[str, int]] = {
    "105": 800,  # metro exit
    "205": 600,  # mall
    "303": 400,  # bus stop
    "801": 500,  # scenic spot / park
    "807": 500,  # hotel
    "1001": 300,  # bank
}
assert set(DEFAULT_VENUE_PRICES) == set(VENUE_TYPES)

#: SPEC §4 Inventory: a 60-s loop of six 10-s spots unless set per kiosk.
DEFAULT_LOOP_SECONDS: Final = 60
DEFAULT_SPOT_SECONDS: Final = 10
DEFAULT_HOLD_MINUTES: Final = 30
MAX_HOLD_MINUTES: Final = 24 * 60
#: Longest date range one booking or availability query may span.
MAX_DAYS: Final = 366
#: Most kiosk-hours one booking may reserve (200 kiosks x 30 days x 24 h = 144,000).
MAX_BOOKING_HOURS: Final = 1_000_000
#: Most kiosk-hours one availability answer may hold (1,000 kiosks x 92 days x 24 h).
MAX_AVAILABILITY_HOURS: Final = 2_208_000

_DAYPART_RE = re.compile(r"^(\d{1,2})-(\d{1,2})$")


class RuleError(ValueError):
    """Input that breaks a booking rule; `code` is the API's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, order=True)
class Daypart:
    """Local whole hours [start, end); `end < start` crosses midnight, 0-24 is all day."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return (self.end - self.start) % 24 or 24

    def hours(self) -> list[int]:
        """Offsets from the start day's midnight: 22-02 -> [22, 23, 24, 25]."""
        return list(range(self.start, self.start + self.length))

    def __str__(self) -> str:
        return f"{self.start:02d}-{self.end:02d}"


def parse_dayparts(text: str) -> tuple[Daypart, ...]:
    """ "07-10,22-02" -> (07-10, 22-02), sorted; refuses malformed, empty and overlapping
    parts. Overlap is judged on the clock face, so 22-02 and 01-03 overlap at 01."""
    parts: list[Daypart] = []
    for raw in text.split(","):
        item = raw.strip()
        m = _DAYPART_RE.match(item)
        if m is None:
            raise RuleError("invalid_daypart", f"daypart {item!r} is not HH-HH (e.g. 07-10)")
        start, end = int(m.group(1)), int(m.group(2))
        if not (0 <= start <= 23 and 0 <= end <= 24):
            raise RuleError("invalid_daypart", f"daypart {item!r}: hours are 00..23 and 01..24")
        if start == end % 24 and not (start == 0 and end == 24):
            raise RuleError("invalid_daypart", f"daypart {item!r} is empty; 00-24 is all day")
        parts.append(Daypart(start, end))
    parts.sort()
    seen: dict[int, Daypart] = {}
    for part in parts:
        for h in part.hours():
            other = seen.get(h % 24)
            if other is not None:
                raise RuleError(
                    "overlapping_dayparts",
                    f"dayparts {other} and {part} overlap at {h % 24:02d}:00",
                )
            seen[h % 24] = part
    return tuple(parts)


def format_dayparts(parts: Iterable[Daypart]) -> str:
    return ",".join(str(p) for p in parts)


def validate_dates(start: date, end: date) -> int:
    """The number of days in [start, end], refusing reversed and over-long ranges."""
    if end < start:
        raise RuleError("invalid_dates", f"end_date {end} is before start_date {start}")
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise RuleError("invalid_dates", f"a date range spans at most {MAX_DAYS} days")
    return days


def validate_opening_hours(open_hour: int, close_hour: int) -> None:
    if not (0 <= open_hour <= 23 and 1 <= close_hour <= 24):
        raise RuleError("invalid_hours", "open_hour is 0..23 and close_hour 1..24")
    if open_hour == close_hour % 24 and not (open_hour == 0 and close_hour == 24):
        raise RuleError("invalid_hours", "open_hour equals close_hour; use 0-24 for always open")


#: The codec refuses a playlist block of more spots (firmware_protocol/codec.py), so a loop
#: of more spots could be sold but never played.
MAX_SPOTS_PER_LOOP = 360


def validate_loop(loop_seconds: int, spot_seconds: int) -> int:
    """The spots per loop, refusing a loop that is not a whole number of spots."""
    if not (1 <= spot_seconds <= 300 and 1 <= loop_seconds <= 3600):
        raise RuleError("invalid_loop", "spot_seconds is 1..300 and loop_seconds 1..3600")
    if loop_seconds % spot_seconds:
        raise RuleError(
            "invalid_loop",
            f"loop_seconds {loop_seconds} is not a multiple of spot_seconds {spot_seconds}",
        )
    if loop_seconds // spot_seconds > MAX_SPOTS_PER_LOOP:
        raise RuleError(
            "invalid_loop",
            f"{loop_seconds // spot_seconds} spots per loop; a playlist block holds at most "
            f"{MAX_SPOTS_PER_LOOP} (firmware_protocol SPEC §4.6)",
        )
    return loop_seconds // spot_seconds


def is_open(hour: int, open_hour: int, close_hour: int) -> bool:
    """Whether local hour `hour` (0..23) is inside [open_hour, close_hour), which may cross
    midnight (22-02)."""
    if open_hour < close_hour:
        return open_hour <= hour < close_hour
    return hour >= open_hour or hour < close_hour


@dataclass(frozen=True, slots=True)
class LocalHour:
    """One sellable hour: its UTC start, its local wall-clock date and hour, the booking day
    it counts towards (the day its daypart starts on) and that daypart."""

    starts_at: datetime
    local_date: date
    local_hour: int
    day: date
    daypart: Daypart


def _wall_instants(wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """The UTC instants at which the local clock of `tz` reads `wall`: none in a DST gap,
    two in a repeated hour, one otherwise."""
    found = []
    for fold in (0, 1):
        aware = wall.replace(tzinfo=tz, fold=fold)
        utc = aware.astimezone(UTC)
        if utc.astimezone(tz).replace(tzinfo=None) == wall and utc not in found:
            found.append(utc)
    return sorted(found)


def expand_hours(
    start: date,
    end: date,
    dayparts: Sequence[Daypart],
    timezone: str,
    open_hour: int = 0,
    close_hour: int = 24,
    *,
    not_before: datetime | None = None,
) -> list[LocalHour]:
    """Every open local hour of the dayparts of each day in [start, end] in `timezone`,
    ordered by UTC start. `not_before` drops hours that start earlier (they have played)."""
    tz = ZoneInfo(timezone)
    out: list[LocalHour] = []
    day = start
    while day <= end:
        midnight = datetime(day.year, day.month, day.day)
        for part in dayparts:
            for offset in part.hours():
                wall = midnight + timedelta(hours=offset)
                if not is_open(wall.hour, open_hour, close_hour):
                    continue
                for utc in _wall_instants(wall, tz):
                    if not_before is None or utc >= not_before:
                        out.append(LocalHour(utc, wall.date(), wall.hour, day, part))
        day += timedelta(days=1)
    out.sort(key=lambda h: h.starts_at)
    return out


def local_label(starts_at: datetime, timezone: str) -> tuple[date, int]:
    """The local date and hour at which a loop hour starting at `starts_at` begins."""
    local = starts_at.astimezone(ZoneInfo(timezone))
    return local.date(), local.hour


def price_fen(spots_per_loop: int, days: int, fen_per_spot_day: int) -> Fen:
    """SPEC §4 Price: per spot per kiosk per day."""
    return Fen(spots_per_loop * days * fen_per_spot_day)


def venue_price(prices: dict[str, int], venue_type: str) -> int:
    """The operator's price for the venue type, else the default, else the dearest default
    (a kiosk with a venue type outside the table is never sold below the list)."""
    if venue_type in prices:
        return prices[venue_type]
    return DEFAULT_VENUE_PRICES.get(venue_type, max(DEFAULT_VENUE_PRICES.values()))


def hold_until(now: datetime, minutes: int) -> datetime:
    if not 1 <= minutes <= MAX_HOLD_MINUTES:
        raise RuleError("invalid_hold", f"a hold lasts 1..{MAX_HOLD_MINUTES} minutes")
    return now + timedelta(minutes=minutes)
