"""Revenue-share rules: statement periods, the share's rounding, carried-over bases."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from server.core.money import Fen
from server.models.partner import SettlementCycle
from server.revenue import rules
from server.revenue.rules import InvalidRate, KioskAmounts, Period

WEEKLY, MONTHLY = SettlementCycle.WEEKLY, SettlementCycle.MONTHLY


def line(kiosk: str, ad: int = 0, forfeited: int = 0, credits: int = 0) -> KioskAmounts:
    return KioskAmounts(kiosk, Fen(ad), Fen(forfeited), Fen(credits))


def test_a_weekly_period_runs_monday_to_sunday() -> None:
    # 2026-11-26 is a Thursday.
    assert rules.unit_containing(WEEKLY, date(2026, 11, 26)) == Period(
        date(2026, 11, 23), date(2026, 11, 29)
    )


def test_a_monthly_period_is_the_calendar_month_including_february_of_a_leap_year() -> None:
    assert rules.unit_containing(MONTHLY, date(2028, 2, 10)) == Period(
        date(2028, 2, 1), date(2028, 2, 29)
    )


def test_periods_are_due_only_once_they_ended_before_the_cutoff() -> None:
    due = rules.due_periods(
        MONTHLY, first_day=date(2026, 9, 15), stated_until=None, cutoff=date(2026, 11, 30)
    )
    assert due == [
        Period(date(2026, 9, 1), date(2026, 9, 30)),
        Period(date(2026, 10, 1), date(2026, 10, 31)),
    ]
    after = rules.due_periods(
        MONTHLY,
        first_day=date(2026, 9, 15),
        stated_until=date(2026, 10, 31),
        cutoff=date(2026, 12, 1),
    )
    assert after == [Period(date(2026, 11, 1), date(2026, 11, 30))]


def test_a_cycle_change_starts_with_a_partial_period_and_leaves_no_gap() -> None:
    # Weekly until Sunday 2026-11-08, then monthly: 9..30 November, then December.
    due = rules.due_periods(
        MONTHLY, first_day=date(2026, 1, 1), stated_until=date(2026, 11, 8), cutoff=date(2027, 1, 1)
    )
    assert due == [
        Period(date(2026, 11, 9), date(2026, 11, 30)),
        Period(date(2026, 12, 1), date(2026, 12, 31)),
    ]
    # Monthly until 30 November (a Monday), then weekly: Tuesday 1 to Sunday 6 December.
    assert rules.next_period(WEEKLY, date(2026, 11, 30)) == Period(
        date(2026, 12, 1), date(2026, 12, 6)
    )


def test_a_period_is_bounded_by_local_midnights() -> None:
    start, end = Period(date(2026, 11, 1), date(2026, 11, 30)).utc_bounds("Asia/Shanghai")
    assert start == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("base", "rate_bp", "share"),
    [
        (10_000, 3000, 3000),
        (1, 5000, 1),  # 0.5 fen rounds half up
        (3, 5000, 2),  # 1.5 -> 2
        (1, 4999, 0),  # 0.4999 -> 0
        (333, 3333, 111),  # 110.9889 -> 111
        (0, 3000, 0),
        (12_345, 10_000, 12_345),
        (12_345, 0, 0),
    ],
)
def test_the_share_is_rounded_half_up_in_integer_fen(base: int, rate_bp: int, share: int) -> None:
    assert rules.share_of(Fen(base), rate_bp) == share


def test_the_share_is_rounded_once_on_the_total_not_per_kiosk() -> None:
    # Three kiosks of 1 fen at 50 %: per kiosk 3 × round(0.5) = 3; on the total round(1.5) = 2.
    found = rules.figures([line("K1", ad=1), line("K2", ad=1), line("K3", ad=1)], 5000, Fen(0))
    assert (found.base, found.share) == (3, 2)


def test_credits_come_off_before_the_rate_and_zero_lines_are_left_out() -> None:
    found = rules.figures(
        [line("K2", ad=10_000, credits=500), line("K1", forfeited=3000), line("K3")], 3000, Fen(0)
    )
    assert [x.kiosk_id for x in found.lines] == ["K1", "K2"]
    assert (found.ad_revenue, found.forfeited, found.credits) == (10_000, 3000, 500)
    assert (found.base, found.share, found.carried_out) == (12_500, 3750, 0)


def test_a_negative_base_pays_nothing_and_is_carried_into_the_next_statement() -> None:
    first = rules.figures([line("K1", ad=100, credits=900)], 3000, Fen(0))
    assert (first.base, first.share, first.carried_out) == (-800, 0, -800)
    second = rules.figures([line("K1", ad=1800)], 3000, first.carried_out)
    assert (second.carried_in, second.base, second.share, second.carried_out) == (
        -800,
        1000,
        300,
        0,
    )


@pytest.mark.parametrize("rate", [-1, 10_001, 30.0, "3000", True])
def test_a_rate_outside_0_to_10000_basis_points_is_refused(rate: object) -> None:
    with pytest.raises(InvalidRate):
        rules.require_rate(rate)


def test_the_profit_sharing_order_number_is_derived_from_the_statement_and_valid_at_wechat() -> (
    None
):
    assert rules.out_order_no(42) == "PS000000000042"
    assert rules.out_order_no(42) == rules.out_order_no(42)
