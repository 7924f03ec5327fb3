"""Pure delivery rules: local days, booked spots, settlement arithmetic, credit rounding."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.delivery import rules

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


# ---------------------------------------------------------------- time


def test_kiosk_time_is_moved_onto_the_server_clock_by_the_known_skew() -> None:
    at = rules.server_time(1_700_000_000_000, skew_ms=1_500)
    assert at == datetime.fromtimestamp(1_700_000_001.5, UTC)


def test_kiosk_time_without_a_skew_estimate_is_taken_as_is() -> None:
    assert rules.server_time(1_700_000_000_000, None) == datetime.fromtimestamp(1.7e9, UTC)


@pytest.mark.parametrize("kiosk_ms", [2**62, -(2**40), 253_402_214_400_000])
def test_an_absurd_kiosk_clock_is_clamped_instead_of_failing(kiosk_ms: int) -> None:
    at = rules.server_time(kiosk_ms, skew_ms=10**12)
    assert datetime(1970, 1, 1, tzinfo=UTC) <= at <= datetime(9999, 12, 30, tzinfo=UTC)


def test_a_play_just_after_local_midnight_counts_for_the_new_local_day() -> None:
    # 16:30 UTC is 00:30 the next day in Shanghai.
    at = datetime(2026, 11, 25, 16, 30, tzinfo=UTC)
    assert rules.local_date(at, SHANGHAI) == date(2026, 11, 26)
    assert rules.local_date(at, UTC) == date(2026, 11, 25)


def test_a_local_day_is_23_hours_long_when_the_clocks_spring_forward() -> None:
    start, end = rules.local_day_bounds(date(2026, 3, 8), NEW_YORK)
    assert start == datetime(2026, 3, 8, 5, tzinfo=UTC)
    assert end - start == timedelta(hours=23)


def test_an_unknown_time_zone_falls_back_to_utc() -> None:
    assert rules.zone("Mars/Olympus_Mons") is UTC


def test_a_day_is_settleable_only_once_the_grace_after_its_local_end_has_passed() -> None:
    grace = timedelta(hours=6)
    day_end = datetime(2026, 11, 25, 16, tzinfo=UTC)  # Shanghai midnight after Nov 25
    day = date(2026, 11, 25)
    assert not rules.settleable(day, SHANGHAI, day_end + grace - timedelta(seconds=1), grace)
    assert rules.settleable(day, SHANGHAI, day_end + grace, grace)


# ---------------------------------------------------------------- booked and lost


def test_an_hour_of_one_spot_per_loop_in_a_60_second_loop_books_60_spots() -> None:
    assert rules.booked_spots(1, 60) == 60
    assert rules.booked_spots(2, 60) == 120
    assert rules.booked_spots(1, 7) == 514  # partial loops at the end of the hour are not sold


def test_lost_spots_are_what_was_booked_and_not_played_never_below_zero() -> None:
    assert rules.lost_spots(120, 90) == 30
    assert rules.lost_spots(120, 130) == 0


# ---------------------------------------------------------------- credits


def test_a_whole_lost_day_is_credited_the_price_of_that_day() -> None:
    # 7 days for 7,000 fen: 1,000 fen a day.
    assert rules.credit_fen(7_000, 7, booked=1_440, lost=1_440) == 1_000


def test_a_partial_loss_is_credited_its_share_of_the_day_rounded_down() -> None:
    # 1,000 fen a day, 1/3 lost: 333.33 -> 333.
    assert rules.credit_fen(7_000, 7, booked=1_440, lost=480) == 333


def test_a_day_price_that_is_not_whole_fen_is_rounded_once_not_twice() -> None:
    # 1,000 fen for 3 days is 333.33 a day; 9 of 10 spots lost is exactly 300 fen.
    # Flooring the day price first would give 333 * 9 // 10 = 299.
    assert rules.credit_fen(1_000, 3, booked=10, lost=9) == 300
    assert rules.credit_fen(1_000, 3, booked=10, lost=10) == 333


def test_nothing_lost_or_nothing_booked_is_credited_nothing() -> None:
    assert rules.credit_fen(7_000, 7, booked=1_440, lost=0) == 0
    assert rules.credit_fen(7_000, 7, booked=0, lost=10) == 0
    assert rules.credit_fen(0, 7, booked=10, lost=10) == 0


@given(
    price=st.integers(1, 10**9),
    days=st.integers(1, 400),
    booked=st.integers(1, 100_000),
    lost_share=st.floats(0, 1),
)
def test_credits_never_exceed_the_price_of_the_day(
    price: int, days: int, booked: int, lost_share: float
) -> None:
    lost = int(booked * lost_share)
    credit = rules.credit_fen(price, days, booked, lost)
    assert 0 <= credit <= price // days + 1
    assert credit * days * booked <= price * lost  # floor: never above the exact share


def test_the_credits_of_every_day_of_a_fully_lost_booking_do_not_exceed_its_price() -> None:
    price, days = 1_000, 3
    assert sum(rules.credit_fen(price, days, 60, 60) for _ in range(days)) <= price


# ---------------------------------------------------------------- reported counts


def test_a_running_day_shows_unplayed_spots_as_pending_not_lost() -> None:
    c = rules.day_count(booked_now=120, played=50, settled_booked=None, settled_lost=None)
    assert (c.booked, c.played, c.pending, c.lost, c.extra, c.settled) == (
        120,
        50,
        70,
        0,
        0,
        False,
    )


def test_a_settled_day_shows_its_frozen_loss_and_late_plays_as_extra() -> None:
    # Settled with 100 of 120 played; 5 more plays arrived after settlement.
    c = rules.day_count(booked_now=120, played=105, settled_booked=120, settled_lost=20)
    assert (c.booked, c.played, c.lost, c.pending, c.extra, c.settled) == (
        120,
        100,
        20,
        0,
        5,
        True,
    )


def test_plays_beyond_what_was_booked_are_extra() -> None:
    c = rules.day_count(booked_now=60, played=75, settled_booked=None, settled_lost=None)
    assert (c.played, c.extra, c.pending) == (60, 15, 0)


@given(
    booked=st.integers(0, 10_000),
    played_at_settlement=st.integers(0, 12_000),
    late=st.integers(0, 500),
    settled=st.booleans(),
)
def test_played_lost_and_pending_always_add_up_to_booked(
    booked: int, played_at_settlement: int, late: int, settled: bool
) -> None:
    lost = rules.lost_spots(booked, played_at_settlement)
    c = rules.day_count(
        booked_now=booked,
        played=played_at_settlement + late,
        settled_booked=booked if settled else None,
        settled_lost=lost if settled else None,
    )
    assert c.played + c.lost + c.pending == c.booked == booked
    assert c.played + c.extra == played_at_settlement + late
    assert min(c.played, c.lost, c.pending, c.extra) >= 0
    if settled:
        assert c.pending == 0
