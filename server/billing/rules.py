"""Pure billing rules (SPEC §4 Billing): billing dates, per-day proration, applying credits.

- **Statements.** A monthly advertiser is billed in arrears: the statement for a calendar
  month is issued on the 1st of the next month and due on the 20th, both dates in the
  billing time zone (settings.billing_timezone). A statement that was not issued on the 1st
  (scheduler down) is issued as soon as the job runs later that month, still dated the 1st.
- **Kiosk-days.** A booking's dates are local to each kiosk, so which month a kiosk-day
  belongs to is decided by the kiosk's own local date, never by the billing time zone.
- **Proration.** A booking kiosk's price is spread over the booking's days: each day costs
  `price // days` fen and the **first day** also carries the remainder `price % days`, so the
  parts in all months add up exactly to the price, to the fen.
- **Credits.** Open credits are applied oldest first, each **whole or not at all**: a credit
  larger than what is left of the subtotal is skipped (it stays open for a later invoice)
  and younger, smaller ones may still fit. The total is never negative. A credit is never
  larger than one kiosk-day of its booking, so any invoice billing that much absorbs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.core.errors import DomainError
from server.core.money import Fen

#: SPEC §4: a statement is issued on the 1st and due on the 20th.
STATEMENT_DAY: Final = 1
STATEMENT_DUE_DAY: Final = 20
DEFAULT_BILLING_TIMEZONE: Final = "Asia/Shanghai"


class InvalidBillingPeriod(DomainError):
    code = "invalid_billing_period"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def local_date(now: datetime, timezone: str) -> date:
    if now.tzinfo is None:
        raise ValueError("naive datetime given to local_date")
    return now.astimezone(zone(timezone)).date()


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_end(day: date) -> date:
    return next_month(day) - timedelta(days=1)


def next_month(day: date) -> date:
    """The 1st of the month after `day`'s."""
    if day.month == 12:
        return date(day.year + 1, 1, 1)
    return date(day.year, day.month + 1, 1)


def previous_month(day: date) -> tuple[date, date]:
    """First and last day of the calendar month before `day`'s."""
    last = month_start(day) - timedelta(days=1)
    return month_start(last), last


@dataclass(frozen=True, slots=True)
class StatementDates:
    period_start: date
    period_end: date
    issued_on: date
    due_on: date


def statement_dates(period_start: date) -> StatementDates:
    """The statement of the month starting `period_start`: issued the 1st of the next month,
    due the 20th of it."""
    if period_start.day != 1:
        raise InvalidBillingPeriod(
            f"a statement covers a calendar month; {period_start} is not a 1st",
            period_start=period_start.isoformat(),
        )
    issued = next_month(period_start).replace(day=STATEMENT_DAY)
    return StatementDates(
        period_start=period_start,
        period_end=month_end(period_start),
        issued_on=issued,
        due_on=issued.replace(day=STATEMENT_DUE_DAY),
    )


def due_statement(now: datetime, timezone: str) -> StatementDates:
    """The statement that is due by `now`: the previous calendar month's, in the billing
    time zone. On the 1st itself and every later day of the month it is the same one, so a
    job that missed the 1st catches up."""
    start, _ = previous_month(local_date(now, timezone))
    return statement_dates(start)


@dataclass(frozen=True, slots=True)
class DayShare:
    """Days `first_day`..`last_day` (inclusive) of a booking kiosk and what they cost."""

    first_day: date
    last_day: date
    days: int
    amount: Fen


def prorate(price: Fen, start: date, end: date) -> list[DayShare]:
    """`price` spread over the days `start`..`end` (inclusive), one share per calendar month
    touched, in order. The shares add up to `price` exactly; the first day carries the
    rounding remainder (module docstring)."""
    if type(price) is not int or price < 0:
        raise ValueError(f"price must be a non-negative integer of fen, got {price!r}")
    if end < start:
        raise ValueError(f"booking ends ({end}) before it starts ({start})")
    total_days = (end - start).days + 1
    per_day, remainder = divmod(price, total_days)
    shares: list[DayShare] = []
    first = start
    while first <= end:
        last = min(month_end(first), end)
        days = (last - first).days + 1
        amount = per_day * days + (remainder if first == start else 0)
        shares.append(DayShare(first, last, days, Fen(amount)))
        first = last + timedelta(days=1)
    return shares


def share_in(price: Fen, start: date, end: date, period_start: date) -> DayShare | None:
    """The share of the month starting `period_start`, or None when no day falls in it."""
    for share in prorate(price, start, end):
        if month_start(share.first_day) == period_start:
            return share
    return None


@dataclass(frozen=True, slots=True)
class OpenCredit:
    id: int
    amount: Fen


@dataclass(frozen=True, slots=True)
class CreditPlan:
    applied: tuple[int, ...]
    credits: Fen
    total: Fen


def apply_credits(subtotal: Fen, credits: Sequence[OpenCredit]) -> CreditPlan:
    """Which of `credits` (oldest first) to apply to an invoice of `subtotal`: each whole or
    not at all, never taking the total below zero (module docstring)."""
    if subtotal < 0:
        raise ValueError(f"subtotal must not be negative, got {subtotal}")
    left = subtotal
    applied: list[int] = []
    for credit in credits:
        if 0 <= credit.amount <= left:
            applied.append(credit.id)
            left = Fen(left - credit.amount)
    return CreditPlan(tuple(applied), Fen(subtotal - left), left)


def line_description(
    booking_id: int, booking_name: str, kiosk_id: str, spots: int, share: DayShare
) -> str:
    days = "day" if share.days == 1 else "days"
    text = (
        f"Booking #{booking_id} {booking_name!r}: kiosk {kiosk_id}, {spots} spot(s) per loop, "
        f"{share.first_day.isoformat()}..{share.last_day.isoformat()} ({share.days} {days})"
    )
    return text[:300]


def total_of(amounts: Iterable[int]) -> Fen:
    return Fen(sum(amounts))
