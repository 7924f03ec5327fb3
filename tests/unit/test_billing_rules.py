"""Billing rules (SPEC §4 Billing): month boundaries, statement dates, proration to the fen,
credits applied whole."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import pytest

from server.billing import rules
from server.billing.rules import DayShare, InvalidBillingPeriod, OpenCredit
from server.core.money import Fen


@pytest.mark.parametrize(
    ("day", "first", "last"),
    [
        (date(2026, 12, 1), date(2026, 11, 1), date(2026, 11, 30)),
        (date(2026, 12, 31), date(2026, 11, 1), date(2026, 11, 30)),
        (date(2027, 1, 1), date(2026, 12, 1), date(2026, 12, 31)),
        (date(2028, 3, 15), date(2028, 2, 1), date(2028, 2, 29)),
        (date(2027, 3, 1), date(2027, 2, 1), date(2027, 2, 28)),
    ],
)
def test_previous_month_spans_the_whole_calendar_month_across_years_and_leap_days(
    day: date, first: date, last: date
) -> None:
    assert rules.previous_month(day) == (first, last)


def test_statement_is_issued_on_the_first_and_due_on_the_twentieth_of_the_next_month() -> None:
    dates = rules.statement_dates(date(2026, 12, 1))
    assert (dates.period_start, dates.period_end) == (date(2026, 12, 1), date(2026, 12, 31))
    assert (dates.issued_on, dates.due_on) == (date(2027, 1, 1), date(2027, 1, 20))


def test_a_statement_period_must_start_on_a_first() -> None:
    with pytest.raises(InvalidBillingPeriod):
        rules.statement_dates(date(2026, 11, 2))


def test_the_due_statement_turns_over_at_midnight_in_the_billing_time_zone() -> None:
    # 2026-11-30 16:00 UTC is 2026-12-01 00:00 in Shanghai: November's statement is due.
    at_shanghai_midnight = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    due = rules.due_statement(at_shanghai_midnight, "Asia/Shanghai")
    assert (due.period_start, due.issued_on, due.due_on) == (
        date(2026, 11, 1),
        date(2026, 12, 1),
        date(2026, 12, 20),
    )
    # One second earlier it is still November there: October's statement is the due one.
    just_before = datetime(2026, 11, 30, 15, 59, 59, tzinfo=UTC)
    assert rules.due_statement(just_before, "Asia/Shanghai").period_start == date(2026, 10, 1)
    # In UTC it is still November 30th for eight more hours.
    assert rules.due_statement(at_shanghai_midnight, "UTC").period_start == date(2026, 10, 1)


def test_a_late_run_still_finds_the_statement_dated_the_first() -> None:
    late = datetime(2026, 12, 17, 3, 0, tzinfo=UTC)
    due = rules.due_statement(late, "Asia/Shanghai")
    assert (due.period_start, due.issued_on) == (date(2026, 11, 1), date(2026, 12, 1))


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        rules.local_date(datetime(2026, 11, 26, tzinfo=UTC), "Mars/Olympus_Mons")


def test_proration_within_one_month_is_one_share_of_the_whole_price() -> None:
    assert rules.prorate(Fen(7000), date(2026, 11, 3), date(2026, 11, 9)) == [
        DayShare(date(2026, 11, 3), date(2026, 11, 9), 7, Fen(7000))
    ]


def test_proration_across_two_months_sums_exactly_to_the_price_with_the_remainder_on_day_one() -> (
    None
):
    # 10 days, 1001 fen: 100 fen a day, and the first day (in November) carries the 1 left.
    shares = rules.prorate(Fen(1001), date(2026, 11, 27), date(2026, 12, 6))
    assert shares == [
        DayShare(date(2026, 11, 27), date(2026, 11, 30), 4, Fen(401)),
        DayShare(date(2026, 12, 1), date(2026, 12, 6), 6, Fen(600)),
    ]
    assert sum(s.amount for s in shares) == 1001


@pytest.mark.parametrize("price", [0, 1, 7, 999, 123_457, 10_000_003])
@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2026, 11, 30), date(2026, 12, 1)),
        (date(2026, 12, 15), date(2027, 2, 10)),
        (date(2028, 1, 31), date(2028, 3, 1)),
        (date(2026, 1, 1), date(2026, 12, 31)),
    ],
)
def test_proration_over_any_months_adds_up_to_the_fen_and_covers_every_day_once(
    price: int, start: date, end: date
) -> None:
    shares = rules.prorate(Fen(price), start, end)
    assert sum(s.amount for s in shares) == price
    assert sum(s.days for s in shares) == (end - start).days + 1
    assert shares[0].first_day == start
    assert shares[-1].last_day == end
    for earlier, later in itertools.pairwise(shares):
        assert (later.first_day - earlier.last_day).days == 1
        assert later.first_day.day == 1
    per_day = price // ((end - start).days + 1)
    assert all(s.amount >= per_day * s.days for s in shares)


def test_share_in_a_month_is_that_months_part_or_none() -> None:
    price, start, end = Fen(3100), date(2026, 11, 20), date(2026, 12, 20)  # 31 days
    assert rules.share_in(price, start, end, date(2026, 11, 1)) == DayShare(
        date(2026, 11, 20), date(2026, 11, 30), 11, Fen(1100)
    )
    assert rules.share_in(price, start, end, date(2026, 12, 1)) == DayShare(
        date(2026, 12, 1), date(2026, 12, 20), 20, Fen(2000)
    )
    assert rules.share_in(price, start, end, date(2027, 1, 1)) is None


def test_a_booking_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        rules.prorate(Fen(100), date(2026, 12, 2), date(2026, 12, 1))


def test_a_float_price_is_refused_not_rounded() -> None:
    with pytest.raises(ValueError, match="integer of fen"):
        rules.prorate(100.5, date(2026, 12, 1), date(2026, 12, 2))  # type: ignore[arg-type]


def test_credits_apply_oldest_first_and_whole() -> None:
    plan = rules.apply_credits(
        Fen(1000), [OpenCredit(1, Fen(300)), OpenCredit(2, Fen(500)), OpenCredit(3, Fen(100))]
    )
    assert plan.applied == (1, 2, 3)
    assert (plan.credits, plan.total) == (900, 100)


def test_a_credit_that_does_not_fit_stays_open_and_a_smaller_younger_one_still_applies() -> None:
    plan = rules.apply_credits(
        Fen(1000), [OpenCredit(1, Fen(800)), OpenCredit(2, Fen(400)), OpenCredit(3, Fen(200))]
    )
    assert plan.applied == (1, 3)
    assert (plan.credits, plan.total) == (1000, 0)


def test_credits_never_take_the_total_below_zero() -> None:
    plan = rules.apply_credits(Fen(250), [OpenCredit(1, Fen(300)), OpenCredit(2, Fen(251))])
    assert plan.applied == ()
    assert (plan.credits, plan.total) == (0, 250)


def test_a_zero_credit_is_applied_so_it_does_not_stay_open_forever() -> None:
    assert rules.apply_credits(Fen(0), [OpenCredit(9, Fen(0))]).applied == (9,)
