"""Pure delivery rules: kiosk time to server time and local days, booked spots, settlement
arithmetic and credit rounding (SPEC §4 delivery). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.core.money import Fen, fen

_MIN_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_UTC = datetime(9999, 12, 30, tzinfo=UTC)


def zone(name: str) -> tzinfo:
    """The kiosk's time zone; UTC for a name this machine does not know (the registry
    validates names, so that is a broken row, and a play must still be stored)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def server_time(kiosk_ms: int, skew_ms: int | None) -> datetime:
    """A kiosk-clock instant on the server's clock: plus the kiosk's estimated skew
    (receive time minus kiosk time, firmware_protocol SPEC §8), clamped to what a datetime
    holds, so an absurd kiosk clock cannot fail the batch."""
    try:
        at = datetime.fromtimestamp((kiosk_ms + (skew_ms or 0)) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return _MAX_UTC if kiosk_ms > 0 else _MIN_UTC
    return min(max(at, _MIN_UTC), _MAX_UTC)


def local_date(at: datetime, tz: tzinfo) -> date:
    return at.astimezone(tz).date()


def local_day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of a local day in UTC; 23 or 25 hours long across a DST change."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def loops_per_hour(loop_seconds: int) -> int:
    return 3600 // loop_seconds if loop_seconds > 0 else 0


def booked_spots(spots_per_loop: int, loop_seconds: int) -> int:
    """Spots one reservation row (one local hour) buys: its spots in every loop of the hour."""
    return spots_per_loop * loops_per_hour(loop_seconds)


def settleable(day: date, tz: tzinfo, now: datetime, grace: timedelta) -> bool:
    """The local day ended at least `grace` ago: kiosks had that long to replay its plays."""
    return local_day_bounds(day, tz)[1] + grace <= now


def lost_spots(booked: int, played: int) -> int:
    """Booked spots that were not played; extra plays never make up for another day."""
    return max(booked - played, 0)


def credit_fen(price_fen: int, days: int, booked: int, lost: int) -> Fen:
    """What `lost` of a kiosk-day's `booked` spots are worth back.

    The kiosk's price covers `days` days, so one day is `price_fen / days` and the credit is
    that times `lost / booked`. Computed as ONE floor of the exact fraction
    `price_fen * lost / (days * booked)`, not as a floored day price times a share: the
    advertiser is never credited more than the day cost, a whole lost day gets the day's
    price back to within a fen, and the sub-fen remainder stays with the network.
    """
    if lost <= 0 or booked <= 0 or days <= 0 or price_fen <= 0:
        return fen(0)
    return fen(price_fen * min(lost, booked) // (days * booked))


@dataclass(frozen=True, slots=True)
class DayCount:
    """One kiosk-day as reported: `played + lost + pending == booked` always.

    `pending` is what is neither played nor settled yet (the day is running, or a kiosk may
    still replay); `extra` are plays beyond what was booked (or arriving after the day was
    settled), shown but never billed."""

    booked: int
    played: int
    extra: int
    lost: int
    pending: int
    settled: bool


def day_count(
    *, booked_now: int, played: int, settled_booked: int | None, settled_lost: int | None
) -> DayCount:
    """Combine a day's raw tally with its settlement, if any.

    A settled day reports the booked and lost figures frozen at settlement (the lost spots
    were already made good or credited): plays that arrived later are extra."""
    played = max(played, 0)
    if settled_booked is not None and settled_lost is not None:
        countable = max(settled_booked - settled_lost, 0)
        counted = min(played, countable)
        return DayCount(
            booked=settled_booked,
            played=counted,
            extra=played - counted,
            lost=settled_booked - countable,
            pending=countable - counted,
            settled=True,
        )
    counted = min(played, booked_now)
    return DayCount(
        booked=booked_now,
        played=counted,
        extra=played - counted,
        lost=0,
        pending=booked_now - counted,
        settled=False,
    )
