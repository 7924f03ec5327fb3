"""Compiling a kiosk's playlist (SPEC §4 Playlists): pure rules, no database."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from firmware_protocol import decode_downlink, encode, topics
from firmware_protocol.messages import MsgType, Playlist
from server.bookings.rules import expand_hours, parse_dayparts
from server.playlists import rules
from server.playlists.rules import (
    BookingRef,
    HourBooking,
    HouseItem,
    KioskLoop,
    MakeGoodOwed,
    Media,
)

NOW = datetime(2026, 11, 26, 9, 20, tzinfo=UTC)  # 17:20 in Shanghai
HOUSE = (
    HouseItem("return-nearby", Media("http://cdn.test/house/a.svg", "aa" * 32)),
    HouseItem("rain-ahead", Media("http://cdn.test/house/b.svg", "bb" * 32)),
)


def media(n: int) -> Media:
    return Media(f"http://cdn.test/media/{n}", f"{n:064x}")


def creatives(*ids: int) -> tuple[tuple[int, Media], ...]:
    return tuple((i, media(i)) for i in ids)


def kiosk(
    tz: str = "Asia/Shanghai", *, loop: int = 60, spot: int = 10, hours: tuple[int, int] = (0, 24)
) -> KioskLoop:
    return KioskLoop(f"K-{tz.split('/')[-1]}", tz, loop, spot, hours[0], hours[1])


def booking(
    booking_id: int, advertiser_id: int, ids: tuple[int, ...] = (), dayparts: str = "00-24"
) -> BookingRef:
    return BookingRef(booking_id, advertiser_id, dayparts, creatives(*ids))


def current_hour(tz: str = "Asia/Shanghai") -> datetime:
    return rules.window_hours(tz, NOW, 1)[0]


def one_hour(
    k: KioskLoop, bookings: list[HourBooking], make_goods: list[MakeGoodOwed] | None = None
) -> tuple[rules.Spot, ...]:
    """The spot list of the current hour when `bookings` hold it."""
    compiled = rules.compile_kiosk(
        k, NOW, 1, {current_hour(k.timezone): bookings}, make_goods or [], HOUSE
    )
    (block,) = compiled.blocks
    return block.spots


def loop_of(spots: tuple[rules.Spot, ...], capacity: int) -> tuple[rules.Spot, ...]:
    return spots[:capacity]


def gaps(positions: list[int], n: int) -> list[int]:
    return [(positions[(i + 1) % len(positions)] - p) % n or n for i, p in enumerate(positions)]


def adjacent_same_advertiser(spots: tuple[rules.Spot, ...]) -> list[int]:
    n = len(spots)
    return [
        i
        for i in range(n)
        if spots[i].advertiser_id is not None
        and spots[i].rule != rules.HOUSE
        and spots[i].advertiser_id == spots[(i + 1) % n].advertiser_id
        and spots[(i + 1) % n].rule != rules.HOUSE
    ]


# ----------------------------------------------------------------------- spot codes


def test_spot_codes_name_the_booking_and_the_creative() -> None:
    assert rules.spot_code(4, 17) == "b4-c17"
    assert rules.parse_spot_code("b4-c17-mg") == rules.SpotRef(4, 17, True)
    assert rules.parse_spot_code(rules.house_code("rain-ahead")) is None


# ----------------------------------------------------------------------- one loop


@pytest.mark.parametrize(("capacity", "spots"), [(6, 1), (6, 2), (6, 3), (12, 5), (30, 7)])
def test_a_bookings_spots_are_spread_evenly_through_the_loop(capacity: int, spots: int) -> None:
    k = kiosk(loop=capacity * 10)
    loop = loop_of(one_hour(k, [HourBooking(booking(1, 1, (5,)), spots)]), capacity)

    positions = [i for i, s in enumerate(loop) if s.rule == rules.BOOKED]
    assert len(positions) == spots
    assert max(gaps(positions, capacity)) - min(gaps(positions, capacity)) <= 1


def test_one_advertisers_spots_are_never_next_to_each_other_also_across_the_loop_end() -> None:
    k = kiosk()  # six 10-s spots
    loop = loop_of(
        one_hour(
            k,
            [
                HourBooking(booking(1, 7, (11,)), 2),
                HourBooking(booking(2, 7, (12,)), 1),  # same advertiser, second booking
                HourBooking(booking(3, 8, (13,)), 2),
            ],
        ),
        6,
    )

    assert Counter(s.advertiser_id for s in loop if s.rule == rules.BOOKED) == {7: 3, 8: 2}
    assert adjacent_same_advertiser(loop) == []


def test_advertisers_are_kept_apart_in_every_mix_that_allows_it() -> None:
    rng = random.Random(4)
    for _ in range(300):
        capacity = rng.choice([3, 4, 5, 6, 7, 8, 9, 10, 12, 20])
        left, bookings, booking_id = capacity, [], itertools.count(1)
        for adv in range(1, rng.randint(1, 4) + 1):
            cap = min(left, capacity // 2)
            if cap <= 0:
                break
            for _ in range(rng.randint(1, 2)):
                n = rng.randint(0, cap)
                if n:
                    bookings.append(HourBooking(booking(next(booking_id), adv, (adv,)), n))
                    cap -= n
                    left -= n
        k = kiosk(loop=capacity * 10)

        loop = loop_of(one_hour(k, bookings), capacity)

        assert sum(s.rule == rules.BOOKED for s in loop) == sum(b.spots for b in bookings)
        assert adjacent_same_advertiser(loop) == [], (capacity, bookings)


def test_unsold_spots_play_house_content_in_rotation() -> None:
    loop = one_hour(kiosk(), [HourBooking(booking(1, 1, (5,)), 2)])

    house = [s for s in loop if s.rule == rules.HOUSE]
    assert len(house) == 4
    assert [s.code for s in house] == [
        "house-return-nearby",
        "house-rain-ahead",
        "house-return-nearby",
        "house-rain-ahead",
    ]
    assert all(s.booking_id is None for s in house)


def test_an_hour_nobody_booked_is_all_house_content() -> None:
    loop = one_hour(kiosk(), [])

    assert len(loop) == 6
    assert {s.rule for s in loop} == {rules.HOUSE}


def test_a_bookings_creatives_rotate_across_loops_of_the_block() -> None:
    loop = one_hour(kiosk(), [HourBooking(booking(1, 1, (5, 6, 7)), 1)])

    # Three loops in the block's spot list, one spot each: every creative once.
    assert len(loop) == 18
    assert [s.code for s in loop if s.rule == rules.BOOKED] == ["b1-c5", "b1-c6", "b1-c7"]


def test_a_booking_without_an_approved_creative_plays_house_content_and_says_why() -> None:
    loop = one_hour(kiosk(), [HourBooking(booking(9, 3, ()), 2)])

    held = [s for s in loop if s.booking_id == 9]
    assert len(held) == 2
    assert all(s.rule == rules.HOUSE and s.note == rules.NOT_APPROVED for s in held)
    assert all(s.code.startswith("house-") for s in held)


def test_make_goods_fill_only_unsold_spots() -> None:
    k = kiosk()
    sold = [HourBooking(booking(1, 1, (5,)), 3), HourBooking(booking(2, 2, (6,)), 2)]
    owed = [MakeGoodOwed(3, 4, creatives(8), plays=10_000)]

    loop = one_hour(k, sold, owed)

    rules_in_loop = Counter(s.rule for s in loop)
    assert rules_in_loop == {rules.BOOKED: 5, rules.MAKE_GOOD: 1}
    assert [s.code for s in loop if s.rule == rules.MAKE_GOOD] == ["b3-c8-mg"]


def test_make_goods_stop_once_the_owed_plays_are_scheduled() -> None:
    k = kiosk()  # 60 loops an hour: one spot position for an hour delivers 60 plays
    owed = [MakeGoodOwed(3, 4, creatives(8), plays=90)]

    compiled = rules.compile_kiosk(k, NOW, 4, {}, owed, HOUSE)

    per_block = [sum(s.rule == rules.MAKE_GOOD for s in b.spots) for b in compiled.blocks]
    # 90 plays: two positions in the first hour (120 plays), none later.
    assert per_block[0] == 2
    assert sum(per_block[1:]) == 0


# ----------------------------------------------------------------------- the window


def test_the_window_starts_at_the_current_local_hour_and_covers_the_hours_asked() -> None:
    compiled = rules.compile_kiosk(kiosk(), NOW, 72, {}, [], HOUSE)

    assert compiled.starts_at == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert compiled.ends_at - compiled.starts_at == timedelta(hours=72)
    # Nothing booked: every hour the same, merged into one block.
    assert len(compiled.blocks) == 1
    assert (compiled.blocks[0].start, compiled.blocks[0].end) == (
        compiled.starts_at,
        compiled.ends_at,
    )


def test_a_half_hour_time_zone_starts_its_hours_at_half_past_utc() -> None:
    compiled = rules.compile_kiosk(kiosk("Asia/Kolkata"), NOW, 48, {}, [], HOUSE)

    assert compiled.starts_at == datetime(2026, 11, 26, 8, 30, tzinfo=UTC)  # 14:00 IST


def test_closed_hours_have_no_block() -> None:
    k = kiosk(hours=(8, 22))

    compiled = rules.compile_kiosk(k, NOW, 48, {}, [], HOUSE)

    tz = ZoneInfo(k.timezone)
    assert [(b.start.astimezone(tz).hour, b.end.astimezone(tz).hour) for b in compiled.blocks] == [
        (17, 22),  # today from the current hour
        (8, 22),  # tomorrow
        (8, 17),  # the day after, up to the end of the 48-hour window
    ]


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Asia/Kolkata"])
def test_a_daypart_across_midnight_plays_in_the_kiosks_local_hours(tz: str) -> None:
    k = kiosk(tz)
    dayparts = "22-02"
    ref = booking(4, 2, (40,), dayparts)
    # The reservations the bookings domain makes for 26 Nov, 22:00 to 27 Nov, 02:00 local.
    hours = expand_hours(date(2026, 11, 26), date(2026, 11, 26), parse_dayparts(dayparts), tz)
    reserved = {h.starts_at: [HourBooking(ref, 2)] for h in hours}

    compiled = rules.compile_kiosk(k, NOW, 48, reserved, [], HOUSE)

    zone = ZoneInfo(tz)
    booked = [b for b in compiled.blocks if any(s.rule == rules.BOOKED for s in b.spots)]
    assert len(booked) == 1
    start, end = booked[0].start.astimezone(zone), booked[0].end.astimezone(zone)
    assert (start.date(), start.hour, end.date(), end.hour) == (
        date(2026, 11, 26),
        22,
        date(2026, 11, 27),
        2,
    )
    assert booked[0].local_start.startswith("2026-11-26T22:00")
    assert {s.daypart for s in booked[0].spots if s.rule == rules.BOOKED} == {"22-02"}
    assert booked[0].start == datetime(2026, 11, 26, 22, tzinfo=zone).astimezone(UTC)


def test_two_time_zones_put_the_same_local_daypart_at_different_utc_hours() -> None:
    starts = {}
    for tz in ("Asia/Shanghai", "Europe/Berlin"):
        hours = expand_hours(date(2026, 11, 27), date(2026, 11, 27), parse_dayparts("07-09"), tz)
        reserved = {h.starts_at: [HourBooking(booking(1, 1, (5,), "07-09"), 1)] for h in hours}
        compiled = rules.compile_kiosk(kiosk(tz), NOW, 60, reserved, [], HOUSE)
        (block,) = [b for b in compiled.blocks if any(s.booking_id == 1 for s in b.spots)]
        starts[tz] = (block.start, block.end - block.start)

    assert starts["Asia/Shanghai"] == (datetime(2026, 11, 26, 23, tzinfo=UTC), timedelta(hours=2))
    assert starts["Europe/Berlin"] == (datetime(2026, 11, 27, 6, tzinfo=UTC), timedelta(hours=2))


# ----------------------------------------------------------------------- output


def test_the_same_inputs_give_the_same_bytes_and_hash() -> None:
    reserved = {current_hour(): [HourBooking(booking(1, 1, (5, 6)), 2)]}

    a = rules.compile_kiosk(kiosk(), NOW, 72, reserved, [], HOUSE)
    b = rules.compile_kiosk(kiosk(), NOW + timedelta(minutes=20), 72, dict(reserved), [], HOUSE)
    c = rules.compile_kiosk(kiosk(), NOW, 72, {}, [], HOUSE)

    assert a.body == b.body
    assert a.content_hash == b.content_hash
    assert c.content_hash != a.content_hash


def test_the_wire_message_decodes_and_matches_the_stored_body() -> None:
    reserved = {current_hour(): [HourBooking(booking(1, 1, (5, 6)), 2)]}
    compiled = rules.compile_kiosk(kiosk(), NOW, 72, reserved, [], HOUSE)
    msg = compiled.message(3, "cmd-1", 1)

    wire = decode_downlink(topics.downlink(msg.kiosk_id, MsgType.PLAYLIST), encode(msg))

    assert isinstance(wire, Playlist)
    assert wire == msg
    stored = rules.from_body(compiled.body)
    assert rules.to_message(msg.kiosk_id, stored.blocks, stored.spot_ms, 3, "cmd-1", 1) == msg
    spot = wire.blocks[0].spots[0]
    assert spot.duration_ms == 10_000
    assert len(wire.blocks) <= 4096
    body = json.loads(compiled.body)
    assert {c["rule"] for c in body["catalog"]} == {"booked", "house"}


def test_a_playlist_too_big_for_one_downlink_is_cut_short_to_fit() -> None:
    k = kiosk()
    # A different booking every hour: no two hours merge.
    reserved = {
        h: [HourBooking(booking(i + 1, i + 1, (i + 1,)), 1)]
        for i, h in enumerate(rules.window_hours(k.timezone, NOW, 72))
    }

    compiled = rules.compile_kiosk(k, NOW, 72, reserved, [], HOUSE, max_bytes=8_000)

    assert len(encode(compiled.message(1, "c" * 32, 1))) <= 8_000
    assert compiled.ends_at < compiled.starts_at + timedelta(hours=72)
    assert compiled.ends_at == compiled.blocks[-1].end


def test_the_spot_on_screen_follows_from_the_block_start_and_spot_durations() -> None:
    reserved = {current_hour(): [HourBooking(booking(1, 1, (5,)), 1)]}
    compiled = rules.compile_kiosk(kiosk(), NOW, 2, reserved, [], HOUSE)
    stored = rules.from_body(compiled.body)
    block = stored.blocks[0]
    booked_at = next(i for i, s in enumerate(block.spots) if s.rule == rules.BOOKED)

    # 25 loops and the booked position later: the same spot, 10 s long.
    at = block.start + timedelta(seconds=25 * 60 + booked_at * 10 + 3)
    shown = rules.on_screen(stored, at)

    assert shown is not None
    assert shown.index == booked_at
    assert shown.spot.code == "b1-c5"
    assert shown.starts_at == at - timedelta(seconds=3)
    assert rules.on_screen(stored, compiled.ends_at + timedelta(seconds=1)) is None
