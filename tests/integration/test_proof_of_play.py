"""Proof of play through the bridge's dispatch path (messages injected without a broker), and
the settlement of kiosk-days into make-goods or credits, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from firmware_protocol.messages import Heartbeat, Offline, Online, Play, SlotState
from server.bridge.dispatch import BatchReport, Dispatcher, inject
from server.core.clock import to_ms
from server.core.db import Database
from server.core.shared_state import MemorySharedState
from server.delivery import jobs, service
from server.delivery.service import MakeGoodDue, record_plays
from server.kiosk_state.service import KioskStateService
from server.models import (
    Advertiser,
    BillingMode,
    Booking,
    BookingCreative,
    BookingKiosk,
    BookingStatus,
    Creative,
    CreativeKind,
    CreativeStatus,
    Kiosk,
    LostSpotPolicy,
    Partner,
    Reservation,
)
from server.models.delivery import AdCredit, DeliveryDay, MakeGood, PlayRecord
from server.playlists.rules import house_code, spot_code

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 20)
#: 10-minute loops: six loops an hour, so one spot per loop books 6 spots an hour.
LOOP_S = 600
GRACE = timedelta(hours=6)
_ids = itertools.count(1)


def local(day: date, hour: int, minute: int = 0, tz: ZoneInfo = SHANGHAI) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).astimezone(UTC)


def day_end(day: date, tz: ZoneInfo = SHANGHAI) -> datetime:
    return local(day + timedelta(days=1), 0, tz=tz)


# ---------------------------------------------------------------- rows


@dataclass(frozen=True)
class Booked:
    booking_id: int
    advertiser_id: int
    creative_id: int
    kiosks: tuple[str, ...]

    def code(self, *, make_good: bool = False) -> str:
        return spot_code(self.booking_id, self.creative_id, make_good=make_good)


def add_kiosk(db: Database, kiosk_id: str, tz: str = "Asia/Shanghai") -> str:
    with db.transaction() as s:
        partner = Partner(name=f"partner-{kiosk_id}", region="Hangzhou", created_at=_now())
        s.add(partner)
        s.flush()
        s.add(
            Kiosk(
                id=kiosk_id,
                name=kiosk_id,
                partner_id=partner.id,
                lat=30.27,
                lon=120.15,
                address="West Lake metro exit B",
                venue_type="105",
                timezone=tz,
                loop_seconds=LOOP_S,
                spot_seconds=10,
                mqtt_password_hash="$7$unused",
                created_at=_now(),
            )
        )
    return kiosk_id


def _now() -> datetime:
    return datetime(2026, 11, 1, tzinfo=UTC)


def add_advertiser(db: Database, policy: LostSpotPolicy) -> int:
    with db.transaction() as s:
        adv = Advertiser(
            name=f"adv-{next(_ids)}",
            billing_mode=BillingMode.PREPAID,
            lost_spot_policy=policy,
            created_at=_now(),
        )
        s.add(adv)
        s.flush()
        return adv.id


def add_booking(
    db: Database,
    advertiser_id: int,
    hours: dict[str, Sequence[datetime]],
    *,
    price_fen: int = 7_000,
    days: int = 1,
    spots: int = 1,
    status: BookingStatus = BookingStatus.CONFIRMED,
    creative_status: CreativeStatus = CreativeStatus.APPROVED,
) -> Booked:
    """A booking of `spots` per loop on each kiosk in the given UTC hour starts, each kiosk
    priced `price_fen` for `days` days."""
    with db.transaction() as s:
        creative = Creative(
            advertiser_id=advertiser_id,
            title="雨天出行，就近还伞",
            kind=CreativeKind.IMAGE,
            duration_ms=10_000,
            media_url="https://cdn.example.cn/c/1.png",
            sha256="0" * 64,
            status=creative_status,
            created_at=_now(),
            updated_at=_now(),
        )
        booking = Booking(
            advertiser_id=advertiser_id,
            name=f"campaign-{next(_ids)}",
            status=status,
            spots_per_loop=spots,
            start_date=DAY,
            end_date=DAY + timedelta(days=days - 1),
            dayparts="08-10",
            selection="{}",
            price_fen=price_fen * len(hours),
            confirmed_at=_now() if status is BookingStatus.CONFIRMED else None,
            created_at=_now(),
            updated_at=_now(),
        )
        s.add_all([creative, booking])
        s.flush()
        s.add(BookingCreative(booking_id=booking.id, creative_id=creative.id))
        for kiosk_id, starts in hours.items():
            s.add(
                BookingKiosk(
                    booking_id=booking.id, kiosk_id=kiosk_id, days=days, price_fen=price_fen
                )
            )
            s.add_all(
                Reservation(booking_id=booking.id, kiosk_id=kiosk_id, starts_at=h, spots=spots)
                for h in starts
            )
        return Booked(booking.id, advertiser_id, creative.id, tuple(hours))


# ---------------------------------------------------------------- plays


class SimKiosk:
    """One simulated kiosk's uplink numbering."""

    def __init__(self, kiosk_id: str) -> None:
        self.id = kiosk_id
        self.seq = 0

    def play(
        self, code: str, at: datetime, *, play_id: bytes | None = None, ms: int = 10_000
    ) -> Play:
        self.seq += 1
        started = to_ms(at)
        pid = play_id if play_id is not None else next(_ids).to_bytes(16, "big")
        return Play(self.id, self.seq, started + ms, pid, code, started, ms, 1)

    def resend(self, play: Play) -> Play:
        """The same play recorded again under a new seq (a kiosk that lost its ack state)."""
        self.seq += 1
        return Play(
            self.id,
            self.seq,
            play.ts_ms,
            play.play_id,
            play.creative_id,
            play.started_ms,
            play.duration_ms,
            play.playlist_version,
        )


def send_live(dispatcher: Dispatcher, *plays: Play) -> None:
    """Each play received the moment it was recorded (a connected kiosk)."""
    for p in plays:
        inject(dispatcher, p, received_ms=p.ts_ms)


def spread(day: date, first_hour: int, n: int, tz: ZoneInfo = SHANGHAI) -> list[datetime]:
    """n spot starts ten minutes apart from `first_hour` local time."""
    return [local(day, first_hour, tz=tz) + timedelta(minutes=10 * i) for i in range(n)]


@pytest.fixture
def dispatcher(db: Database) -> Dispatcher:
    return Dispatcher(db, MemorySharedState(), service=KioskStateService(on_play=record_plays))


def tally(db: Database, b: Booked, kiosk_id: str, day: date = DAY) -> DeliveryDay | None:
    with db.transaction() as s:
        return s.get(DeliveryDay, (b.booking_id, kiosk_id, day))


def count(db: Database, model: type[object]) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def settle(db: Database, now: datetime) -> int:
    with db.transaction(immediate=True) as s:
        return jobs.settle_delivery(s, now, grace=GRACE)


def morning(kiosk_id: str, day: date = DAY) -> dict[str, list[datetime]]:
    """08:00 and 09:00 local: 12 spots booked at one spot per 10-minute loop."""
    return {kiosk_id: [local(day, 8), local(day, 9)]}


# ---------------------------------------------------------------- duplicates


def test_a_play_resent_under_another_seq_is_stored_and_counted_once(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    b = add_booking(db, add_advertiser(db, LostSpotPolicy.MAKE_GOOD), morning(k.id))
    first = k.play(b.code(), local(DAY, 8, 5))
    send_live(dispatcher, first)

    report: BatchReport = inject(dispatcher, k.resend(first), received_ms=first.ts_ms + 60_000)

    assert report.applied == 1  # a new seq for the bridge...
    assert count(db, PlayRecord) == 1  # ...but the same play
    day = tally(db, b, k.id)
    assert day is not None
    assert day.played == 1


def test_the_same_play_twice_in_one_batch_is_counted_once(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    b = add_booking(db, add_advertiser(db, LostSpotPolicy.MAKE_GOOD), morning(k.id))
    p = k.play(b.code(), local(DAY, 8, 5))

    inject(dispatcher, p, k.resend(p), k.play(b.code(), local(DAY, 8, 15)), received_ms=p.ts_ms)

    assert count(db, PlayRecord) == 2
    day = tally(db, b, k.id)
    assert day is not None
    assert day.played == 2


def test_plays_replayed_after_an_offline_period_count_once_for_the_day_they_were_shown(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    b = add_booking(db, add_advertiser(db, LostSpotPolicy.MAKE_GOOD), morning(k.id))
    start = local(DAY, 7, 59)
    inject(dispatcher, Online(k.id, 0, to_ms(start), 1), received_ms=to_ms(start))
    send_live(dispatcher, *(k.play(b.code(), at) for at in spread(DAY, 8, 4)))
    # The link drops at 08:35 (the broker sends the Will); the screen keeps playing and the
    # kiosk buffers eight plays in flash until it reconnects the next morning...
    lost_at = local(DAY, 8, 35)
    inject(dispatcher, Offline(k.id, 0, to_ms(start), 1), received_ms=to_ms(lost_at))
    buffered = [k.play(b.code(), at) for at in spread(DAY, 8, 8)[4:] + spread(DAY, 9, 4)]
    back = to_ms(local(DAY + timedelta(days=1), 7))
    inject(dispatcher, Online(k.id, 0, back, 2), received_ms=back)
    # ...replays them after its Online, then replays them again (the acks were lost).
    replay_at = back + 1_000
    inject(dispatcher, *buffered, received_ms=replay_at)
    inject(dispatcher, *(k.resend(p) for p in buffered), received_ms=replay_at + 5_000)

    day = tally(db, b, k.id)
    assert day is not None
    assert day.played == 12
    with db.transaction() as s:
        dates = set(s.scalars(select(PlayRecord.local_date)).all())
        received = s.scalars(
            select(PlayRecord.received_at).where(PlayRecord.id == buffered[0].play_id.hex())
        ).one()
    assert dates == {DAY}  # the day shown, not the day received
    assert received == datetime.fromtimestamp(replay_at / 1000, UTC)


def test_house_content_and_foreign_codes_are_stored_but_billed_to_no_booking(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    other = add_kiosk(db, "K2")
    adv = add_advertiser(db, LostSpotPolicy.MAKE_GOOD)
    b = add_booking(db, adv, morning(k.id))
    elsewhere = add_booking(db, adv, morning(other))
    at = local(DAY, 8, 5)
    plays = [
        k.play(house_code("travel-tips"), at),
        k.play("b999999-c1", at),  # no such booking
        k.play(elsewhere.code(), at),  # a booking that did not buy this kiosk
        k.play("cr-880", at),  # not a spot code at all
        k.play(b.code(), at),
    ]
    send_live(dispatcher, *plays)

    with db.transaction() as s:
        rows = {r.code: r for r in s.scalars(select(PlayRecord)).all()}
    assert len(rows) == 5
    assert [c for c, r in rows.items() if r.booking_id is not None] == [b.code()]
    assert all(r.creative_id is None for c, r in rows.items() if c != b.code())
    assert tally(db, elsewhere, k.id) is None
    assert tally(db, elsewhere, other) is None
    day = tally(db, b, k.id)
    assert day is not None
    assert day.played == 1


def test_a_kiosk_clock_running_behind_is_corrected_by_its_skew(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    next_day = DAY + timedelta(days=1)
    b = add_booking(
        db,
        add_advertiser(db, LostSpotPolicy.MAKE_GOOD),
        {k.id: [local(DAY, 23), local(next_day, 0)]},
        days=2,
    )
    # The kiosk's clock is 30 s behind: a live heartbeat teaches the bridge its skew.
    now = local(DAY, 23, 50)
    k.seq += 1
    empty = tuple(SlotState(tag=None) for _ in range(22))
    inject(
        dispatcher, Heartbeat(k.id, k.seq, to_ms(now) - 30_000, -70, empty), received_ms=to_ms(now)
    )
    # It starts a spot at 23:59:50 by its own clock: 00:00:20 the next day by the server's.
    p = k.play(b.code(), local(DAY, 23, 59) + timedelta(seconds=50))
    inject(dispatcher, p, received_ms=p.ts_ms + 30_000)

    with db.transaction() as s:
        row = s.get(PlayRecord, p.play_id.hex())
    assert row is not None
    assert row.started_at == local(next_day, 0) + timedelta(seconds=20)
    assert row.local_date == next_day
    assert tally(db, b, k.id, DAY) is None
    shown = tally(db, b, k.id, next_day)
    assert shown is not None
    assert shown.played == 1


# ---------------------------------------------------------------- settlement


def test_lost_spots_become_make_goods_under_a_make_good_contract(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    b = add_booking(db, add_advertiser(db, LostSpotPolicy.MAKE_GOOD), morning(k.id))
    send_live(dispatcher, *(k.play(b.code(), at) for at in spread(DAY, 8, 9)))

    assert settle(db, day_end(DAY) + GRACE) == 1

    with db.transaction() as s:
        owed = s.scalars(select(MakeGood)).all()
        assert [(m.booking_id, m.kiosk_id, m.local_date, m.spots_owed) for m in owed] == [
            (b.booking_id, k.id, DAY, 3)
        ]
    assert count(db, AdCredit) == 0
    day = tally(db, b, k.id)
    assert day is not None
    assert (day.booked, day.played, day.lost) == (12, 9, 3)


def test_lost_spots_become_credits_worth_the_lost_share_under_a_credit_contract(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    adv = add_advertiser(db, LostSpotPolicy.CREDIT)
    # 7,000 fen for 7 days: 1,000 fen a day; 12 spots booked a day, 5 lost: 416.67 -> 416.
    b = add_booking(db, adv, morning(k.id), price_fen=7_000, days=7)
    send_live(dispatcher, *(k.play(b.code(), at) for at in spread(DAY, 8, 7)))

    assert settle(db, day_end(DAY) + GRACE) == 1

    with db.transaction() as s:
        credits = s.scalars(select(AdCredit)).all()
        assert [
            (c.advertiser_id, c.booking_id, c.kiosk_id, c.local_date, c.spots, c.amount_fen)
            for c in credits
        ] == [(adv, b.booking_id, k.id, DAY, 5, 416)]
        assert credits[0].invoice_id is None
    assert count(db, MakeGood) == 0


def test_a_fully_delivered_day_is_settled_with_nothing_owed(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    b = add_booking(db, add_advertiser(db, LostSpotPolicy.CREDIT), morning(k.id))
    send_live(dispatcher, *(k.play(b.code(), at) for at in spread(DAY, 8, 13)))

    assert settle(db, day_end(DAY) + GRACE) == 1

    assert count(db, AdCredit) == 0
    day = tally(db, b, k.id)
    assert day is not None
    assert (day.booked, day.played, day.lost) == (12, 13, 0)


def test_settling_twice_settles_once(db: Database, dispatcher: Dispatcher) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    b = add_booking(db, add_advertiser(db, LostSpotPolicy.MAKE_GOOD), morning(k.id))
    c = add_booking(db, add_advertiser(db, LostSpotPolicy.CREDIT), morning(k.id))
    send_live(dispatcher, k.play(b.code(), local(DAY, 8, 5)))
    now = day_end(DAY) + GRACE

    assert settle(db, now) == 2
    assert settle(db, now + timedelta(minutes=15)) == 0

    assert count(db, MakeGood) == 1
    assert count(db, AdCredit) == 1
    day = tally(db, c, k.id)
    assert day is not None
    assert (day.booked, day.played, day.lost) == (12, 0, 12)


def test_a_day_is_not_settled_before_its_grace_period_so_a_late_replay_still_counts(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    b = add_booking(db, add_advertiser(db, LostSpotPolicy.MAKE_GOOD), morning(k.id))
    buffered = [k.play(b.code(), at) for at in spread(DAY, 8, 12)]

    assert settle(db, day_end(DAY) + GRACE - timedelta(seconds=1)) == 0
    inject(dispatcher, *buffered, received_ms=to_ms(day_end(DAY) + timedelta(hours=5)))
    assert settle(db, day_end(DAY) + GRACE) == 1

    assert count(db, MakeGood) == 0
    day = tally(db, b, k.id)
    assert day is not None
    assert (day.booked, day.lost) == (12, 0)


def test_kiosks_in_two_time_zones_settle_at_their_own_local_midnight(
    db: Database, dispatcher: Dispatcher
) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    sh = add_kiosk(db, "K-SH")
    de = add_kiosk(db, "K-DE", tz="Europe/Berlin")
    b = add_booking(
        db,
        add_advertiser(db, LostSpotPolicy.MAKE_GOOD),
        {sh: [local(DAY, 8)], de: [local(DAY, 8, tz=berlin)]},
    )
    # Shanghai's day ended 7 hours before Berlin's.
    assert settle(db, day_end(DAY) + GRACE) == 1
    assert settle(db, day_end(DAY, berlin) + GRACE - timedelta(seconds=1)) == 0
    assert settle(db, day_end(DAY, berlin) + GRACE) == 1

    with db.transaction() as s:
        owed = {m.kiosk_id: m.spots_owed for m in s.scalars(select(MakeGood)).all()}
    assert owed == {sh: 6, de: 6}
    assert (tally(db, b, de) or DeliveryDay()).local_date == DAY


def test_bookings_that_are_not_confirmed_are_never_settled(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = add_kiosk(db, "K1")
    adv = add_advertiser(db, LostSpotPolicy.CREDIT)
    for status in (BookingStatus.HELD, BookingStatus.RELEASED, BookingStatus.EXPIRED):
        add_booking(db, adv, morning(k), status=status)

    assert settle(db, day_end(DAY) + GRACE) == 0
    assert count(db, AdCredit) == 0


def test_schedulers_settling_at_the_same_moment_settle_each_day_once(
    db: Database, dispatcher: Dispatcher
) -> None:
    kiosks = [add_kiosk(db, f"K{i}") for i in range(8)]
    adv = add_advertiser(db, LostSpotPolicy.CREDIT)
    hours = {k: [local(DAY, 8), local(DAY, 9)] for k in kiosks}
    add_booking(db, adv, hours)
    add_booking(db, add_advertiser(db, LostSpotPolicy.MAKE_GOOD), hours)
    now = day_end(DAY) + GRACE
    barrier = threading.Barrier(4)
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(settle(db, now))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    assert sum(results) == 16
    assert count(db, AdCredit) == 8
    assert count(db, MakeGood) == 8


# ---------------------------------------------------------------- make-goods for playlists


def test_make_goods_due_count_down_as_make_good_plays_are_shown(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = SimKiosk(add_kiosk(db, "K1"))
    adv = add_advertiser(db, LostSpotPolicy.MAKE_GOOD)
    b = add_booking(db, adv, morning(k.id))
    send_live(dispatcher, *(k.play(b.code(), at) for at in spread(DAY, 8, 8)))
    settle(db, day_end(DAY) + GRACE)

    def due() -> dict[str, list[MakeGoodDue]]:
        with db.transaction() as s:
            return service.make_goods_due(s, [k.id, "K-NONE"])

    assert due() == {k.id: [MakeGoodDue(b.booking_id, adv, (b.creative_id,), 4)]}
    next_day = DAY + timedelta(days=1)
    send_live(dispatcher, *(k.play(b.code(make_good=True), at) for at in spread(next_day, 8, 3)))
    assert due() == {k.id: [MakeGoodDue(b.booking_id, adv, (b.creative_id,), 1)]}
    send_live(dispatcher, *(k.play(b.code(make_good=True), at) for at in spread(next_day, 9, 2)))
    assert due() == {}

    # Make-good plays are counted apart: they do not fill the next day's booked spots.
    shown = tally(db, b, k.id, next_day)
    assert shown is not None
    assert (shown.played, shown.make_good_played) == (0, 5)


def test_make_goods_of_a_booking_without_an_approved_creative_are_not_scheduled(
    db: Database, dispatcher: Dispatcher
) -> None:
    k = add_kiosk(db, "K1")
    adv = add_advertiser(db, LostSpotPolicy.MAKE_GOOD)
    add_booking(db, adv, morning(k), creative_status=CreativeStatus.REJECTED)
    settle(db, day_end(DAY) + GRACE)

    assert count(db, MakeGood) == 1
    with db.transaction() as s:
        assert service.make_goods_due(s, [k]) == {}
