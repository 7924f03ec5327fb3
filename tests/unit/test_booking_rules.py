"""Pure booking rules: dayparts, local hours in several time zones (DST included), opening
hours, loop capacity and price. No database."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from server.bookings import rules
from server.bookings.rules import Daypart, RuleError


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _local(hours: list[rules.LocalHour]) -> list[tuple[str, int]]:
    return [(h.local_date.isoformat(), h.local_hour) for h in hours]


# --- dayparts ----------------------------------------------------------------------------------


def test_dayparts_parse_sorted_and_a_part_across_midnight_runs_past_24() -> None:
    parts = rules.parse_dayparts("22-02, 07-10")
    assert parts == (Daypart(7, 10), Daypart(22, 2))
    assert parts[1].hours() == [22, 23, 24, 25]
    assert rules.format_dayparts(parts) == "07-10,22-02"


def test_all_day_is_00_24() -> None:
    (part,) = rules.parse_dayparts("00-24")
    assert part.hours() == list(range(24))


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("7-25", "invalid_daypart"),
        ("10-10", "invalid_daypart"),
        ("24-02", "invalid_daypart"),
        ("morning", "invalid_daypart"),
        ("07-10,", "invalid_daypart"),
        ("07-10,09-12", "overlapping_dayparts"),
        ("22-02,01-03", "overlapping_dayparts"),
        ("00-24,05-06", "overlapping_dayparts"),
    ],
)
def test_malformed_empty_and_overlapping_dayparts_are_refused_with_a_code(
    text: str, code: str
) -> None:
    with pytest.raises(RuleError) as err:
        rules.parse_dayparts(text)
    assert err.value.code == code


def test_overlap_names_the_hour_where_the_parts_meet() -> None:
    with pytest.raises(RuleError, match="overlap at 01:00"):
        rules.parse_dayparts("22-02,01-03")


# --- expanding into UTC instants ---------------------------------------------------------------


def test_a_daypart_across_midnight_belongs_to_the_day_it_starts_on() -> None:
    hours = rules.expand_hours(
        date(2026, 12, 1), date(2026, 12, 2), rules.parse_dayparts("22-02"), "Asia/Shanghai"
    )
    assert _local(hours) == [
        ("2026-12-01", 22),
        ("2026-12-01", 23),
        ("2026-12-02", 0),
        ("2026-12-02", 1),
        ("2026-12-02", 22),
        ("2026-12-02", 23),
        ("2026-12-03", 0),
        ("2026-12-03", 1),
    ]
    assert [h.day for h in hours] == [date(2026, 12, 1)] * 4 + [date(2026, 12, 2)] * 4
    assert hours[0].starts_at == _utc(2026, 12, 1, 14)  # 22:00 CST = 14:00 UTC
    assert hours[-1].starts_at == _utc(2026, 12, 2, 17)


def test_the_same_local_hours_in_shanghai_and_kolkata_start_at_different_utc_instants() -> None:
    parts = rules.parse_dayparts("07-09,23-01")
    day = date(2026, 12, 1)
    shanghai = rules.expand_hours(day, day, parts, "Asia/Shanghai")
    kolkata = rules.expand_hours(day, day, parts, "Asia/Kolkata")
    assert (
        _local(shanghai)
        == _local(kolkata)
        == [
            ("2026-12-01", 7),
            ("2026-12-01", 8),
            ("2026-12-01", 23),
            ("2026-12-02", 0),
        ]
    )
    assert [h.starts_at for h in shanghai] == [
        _utc(2026, 11, 30, 23),
        _utc(2026, 12, 1, 0),
        _utc(2026, 12, 1, 15),
        _utc(2026, 12, 1, 16),
    ]
    # UTC+05:30: every local hour starts at half past a UTC hour
    assert [h.starts_at for h in kolkata] == [
        _utc(2026, 12, 1, 1, 30),
        _utc(2026, 12, 1, 2, 30),
        _utc(2026, 12, 1, 17, 30),
        _utc(2026, 12, 1, 18, 30),
    ]


def test_an_hour_skipped_by_dst_is_not_sold() -> None:
    day = date(2026, 3, 29)  # Berlin: 02:00 CET jumps to 03:00 CEST
    hours = rules.expand_hours(day, day, rules.parse_dayparts("01-04"), "Europe/Berlin")
    assert _local(hours) == [("2026-03-29", 1), ("2026-03-29", 3)]
    assert [h.starts_at for h in hours] == [_utc(2026, 3, 29, 0), _utc(2026, 3, 29, 1)]


def test_an_hour_repeated_by_dst_is_two_hours_of_inventory() -> None:
    day = date(2026, 10, 25)  # Berlin: 03:00 CEST falls back to 02:00 CET
    hours = rules.expand_hours(day, day, rules.parse_dayparts("01-04"), "Europe/Berlin")
    assert _local(hours) == [
        ("2026-10-25", 1),
        ("2026-10-25", 2),
        ("2026-10-25", 2),
        ("2026-10-25", 3),
    ]
    assert [h.starts_at for h in hours] == [
        _utc(2026, 10, 24, 23),
        _utc(2026, 10, 25, 0),
        _utc(2026, 10, 25, 1),
        _utc(2026, 10, 25, 2),
    ]


def test_a_night_daypart_in_berlin_across_the_dst_change_keeps_local_hours() -> None:
    parts = rules.parse_dayparts("22-02")
    hours = rules.expand_hours(date(2026, 3, 28), date(2026, 3, 29), parts, "Europe/Berlin")
    assert _local(hours)[:4] == [
        ("2026-03-28", 22),
        ("2026-03-28", 23),
        ("2026-03-29", 0),
        ("2026-03-29", 1),
    ]
    # before the change 22:00 is 21:00 UTC (CET), after it 20:00 UTC (CEST)
    assert hours[0].starts_at == _utc(2026, 3, 28, 21)
    assert hours[4].starts_at == _utc(2026, 3, 29, 20)


def test_only_open_hours_are_sold_and_opening_hours_may_cross_midnight() -> None:
    day = date(2026, 12, 1)
    parts = rules.parse_dayparts("07-10,21-23")
    daytime = rules.expand_hours(day, day, parts, "Asia/Shanghai", open_hour=8, close_hour=22)
    assert [h.local_hour for h in daytime] == [8, 9, 21]
    bar = rules.expand_hours(
        day, day, rules.parse_dayparts("00-24"), "Asia/Shanghai", open_hour=18, close_hour=2
    )
    assert [h.local_hour for h in bar] == [0, 1, 18, 19, 20, 21, 22, 23]


def test_hours_that_have_started_are_left_out_when_asked() -> None:
    day = date(2026, 12, 1)
    parts = rules.parse_dayparts("07-10")
    hours = rules.expand_hours(
        day, day, parts, "Asia/Shanghai", not_before=_utc(2026, 12, 1, 0, 10)
    )
    assert [h.local_hour for h in hours] == [9]  # 08:00 CST began at 00:00 UTC


def test_local_label_names_the_local_date_and_hour_of_an_instant() -> None:
    assert rules.local_label(_utc(2026, 12, 1, 18, 30), "Asia/Kolkata") == (date(2026, 12, 2), 0)


# --- dates, loops, opening hours, prices -------------------------------------------------------


def test_dates_must_run_forward_and_stay_within_a_year() -> None:
    assert rules.validate_dates(date(2026, 12, 1), date(2026, 12, 1)) == 1
    with pytest.raises(RuleError, match="before start_date"):
        rules.validate_dates(date(2026, 12, 2), date(2026, 12, 1))
    with pytest.raises(RuleError, match="at most 366 days"):
        rules.validate_dates(date(2026, 1, 1), date(2027, 1, 2))


def test_a_loop_is_a_whole_number_of_spots() -> None:
    assert rules.validate_loop(60, 10) == 6
    assert rules.validate_loop(90, 15) == 6
    with pytest.raises(RuleError, match="not a multiple"):
        rules.validate_loop(60, 7)


def test_opening_hours_are_whole_hours_and_not_empty() -> None:
    rules.validate_opening_hours(0, 24)
    rules.validate_opening_hours(22, 2)
    for bad in ((8, 8), (24, 2), (0, 0), (5, 25)):
        with pytest.raises(RuleError):
            rules.validate_opening_hours(*bad)


def test_is_open_handles_hours_across_midnight() -> None:
    assert [h for h in range(24) if rules.is_open(h, 22, 2)] == [0, 1, 22, 23]
    assert [h for h in range(24) if rules.is_open(h, 8, 10)] == [8, 9]


def test_price_is_spots_times_days_times_the_venue_price_in_fen() -> None:
    assert rules.price_fen(2, 3, rules.venue_price({}, "105")) == 2 * 3 * 800
    assert rules.price_fen(1, 10, rules.venue_price({"105": 1234}, "105")) == 12_340


def test_every_venue_type_has_a_default_price_and_an_unknown_one_gets_the_dearest() -> None:
    assert set(rules.DEFAULT_VENUE_PRICES) == {"105", "303", "205", "801", "1001", "807"}
    assert rules.venue_price({}, "999") == max(rules.DEFAULT_VENUE_PRICES.values())


def test_a_hold_lasts_between_a_minute_and_a_day() -> None:
    now = _utc(2026, 12, 1)
    assert rules.hold_until(now, 30) == _utc(2026, 12, 1, 0, 30)
    with pytest.raises(RuleError):
        rules.hold_until(now, 0)
    with pytest.raises(RuleError):
        rules.hold_until(now, 24 * 60 + 1)
