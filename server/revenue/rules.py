"""Pure revenue-share rules (SPEC §5): statement periods and the share. No I/O.

The share is `round_half_up(max(base, 0) × rate_bp / 10000)` with
`base = ad revenue + forfeited deposits − credits + carried in`, rounded **once, on the
total**: the contract's rate applies to the partner's revenue, not to each kiosk's, and
rounding 2,000 kiosk lines separately would drift up to 1,000 fen from it. Lines show each
kiosk's base amounts, never a rounded per-kiosk share. Half up (四舍五入) is the commercial
convention partners expect. A negative base (credits or reversed forfeitures larger than
the period's revenue) pays nothing and is carried into the next statement, so the partner
is never paid on revenue that was later taken back.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from server.core.errors import DomainError
from server.core.money import Fen
from server.models.partner import SettlementCycle

BASIS_POINTS = 10_000
#: Periods a single job run states per partner at most (a scheduler down for years).
MAX_PERIODS_PER_RUN = 60


class InvalidRate(DomainError):
    code = "invalid_rate"


@dataclass(frozen=True, order=True)
class Period:
    """Days `start`..`end`, inclusive, in a time zone."""

    start: date
    end: date

    def utc_bounds(self, tz: str) -> tuple[datetime, datetime]:
        """[first instant, first instant after) in UTC: local midnights."""
        zone = ZoneInfo(tz)
        first = datetime.combine(self.start, time(0), tzinfo=zone)
        after = datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=zone)
        return first.astimezone(UTC), after.astimezone(UTC)


def unit_containing(cycle: SettlementCycle, day: date) -> Period:
    """The calendar week (Monday-Sunday) or month containing `day`."""
    if cycle is SettlementCycle.WEEKLY:
        monday = day - timedelta(days=day.weekday())
        return Period(monday, monday + timedelta(days=6))
    last = calendar.monthrange(day.year, day.month)[1]
    return Period(day.replace(day=1), day.replace(day=last))


def next_period(cycle: SettlementCycle, previous_end: date) -> Period:
    """The period after one that ended on `previous_end`: from the next day to the end of
    its week or month. After a cycle change the first period is partial, so periods never
    overlap and never leave a gap."""
    start = previous_end + timedelta(days=1)
    return Period(start, unit_containing(cycle, start).end)


def due_periods(
    cycle: SettlementCycle, *, first_day: date, stated_until: date | None, cutoff: date
) -> list[Period]:
    """Periods to state, oldest first: from the unit containing `first_day` (or after the
    last stated period, ending `stated_until`) while they end before `cutoff`."""
    period = (
        unit_containing(cycle, first_day)
        if stated_until is None
        else next_period(cycle, stated_until)
    )
    found: list[Period] = []
    while period.end < cutoff and len(found) < MAX_PERIODS_PER_RUN:
        found.append(period)
        period = next_period(cycle, period.end)
    return found


def local_date(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


@dataclass(frozen=True)
class KioskAmounts:
    kiosk_id: str
    ad_revenue: Fen
    forfeited: Fen
    credits: Fen


@dataclass(frozen=True)
class StatementFigures:
    lines: tuple[KioskAmounts, ...]
    rate_bp: int
    ad_revenue: Fen
    forfeited: Fen
    credits: Fen
    carried_in: Fen
    base: Fen
    share: Fen
    carried_out: Fen


def require_rate(rate_bp: object) -> int:
    if type(rate_bp) is not int or not 0 <= rate_bp <= BASIS_POINTS:
        raise InvalidRate(
            f"rate must be an integer of basis points 0..{BASIS_POINTS}, got {rate_bp!r}",
            rate_bp=rate_bp,
        )
    return rate_bp


def share_of(base: Fen, rate_bp: int) -> Fen:
    """round_half_up(base × rate / 10000) for a base >= 0, in integers only."""
    if base < 0:
        raise ValueError(f"the share of a negative base {base} is not defined")
    return Fen((base * require_rate(rate_bp) * 2 + BASIS_POINTS) // (2 * BASIS_POINTS))


def figures(lines: Iterable[KioskAmounts], rate_bp: int, carried_in: Fen) -> StatementFigures:
    """A statement's totals from its kiosk lines (sorted by kiosk, zero lines left out)."""
    if carried_in > 0:
        raise ValueError(f"only a negative base is carried, got {carried_in}")
    kept = tuple(
        sorted(
            (line for line in lines if line.ad_revenue or line.forfeited or line.credits),
            key=lambda line: line.kiosk_id,
        )
    )
    ad = Fen(sum(line.ad_revenue for line in kept))
    forfeited = Fen(sum(line.forfeited for line in kept))
    credits = Fen(sum(line.credits for line in kept))
    base = Fen(ad + forfeited - credits + carried_in)
    return StatementFigures(
        lines=kept,
        rate_bp=require_rate(rate_bp),
        ad_revenue=ad,
        forfeited=forfeited,
        credits=credits,
        carried_in=carried_in,
        base=base,
        share=share_of(Fen(max(base, 0)), rate_bp),
        carried_out=Fen(min(base, 0)),
    )


def out_order_no(statement_id: int) -> str:
    """The profit-sharing order of a statement (商户分账单号, [0-9A-Za-z_-|*@]{1,64}): one per
    statement, so every payout attempt of it is the same order at WeChat."""
    return f"PS{statement_id:012d}"
