"""50 confirmations at once for the last spots of the same loops (SPEC §4: no loop is ever
oversold, also when many bookings are confirmed at the same moment).

Each thread confirms its own draft in its own transaction, all released together by a
barrier. On PostgreSQL they truly run at once (row locks taken in (kiosk, hour) order, the
CHECK `sold <= capacity` behind them); on SQLite they queue for the write lock
(BEGIN IMMEDIATE), which is exactly the guarantee there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from server.accounts import service as accounts
from server.bookings import service
from server.bookings.service import BookingRequest, Selection, SoldOut
from server.core.clock import clock
from server.core.db import Database
from server.kiosks import service as kiosks
from server.models import (
    BillingMode,
    Booking,
    BookingStatus,
    Creative,
    CreativeKind,
    CreativeStatus,
    LoopHour,
    LostSpotPolicy,
    Reservation,
)
from server.partners import service as partners

CONTENDERS = 50
KIOSKS = ("KA", "KB")
DAYS = 2
DAYPART_HOURS = 3  # "08-11"


@pytest.fixture
def racing_db(db: Database) -> Iterator[Database]:
    """The test's database with a pool big enough for every contender at once."""
    wide = Database(db.url, pool_size=CONTENDERS + 5, max_overflow=10)
    yield wide
    wide.dispose()


def _setup(db: Database) -> tuple[int, list[tuple[int, int]]]:
    """Two kiosks with 2 of 6 spots left in every booked hour; returns the first booking
    and the 50 contenders' (advertiser id, draft booking id)."""
    start = clock.now().date() + timedelta(days=5)
    now = clock.now()
    with db.transaction() as s:
        partner = partners.register_partner(s, name="Race Ops", region="Race")
        for kiosk_id in KIOSKS:
            kiosks.register_kiosk(
                s,
                partner_id=partner.id,
                kiosk_id=kiosk_id,
                name=kiosk_id,
                lat=30.27,
                lon=120.15,
                address="Race St",
                venue_type="105",
            )
        advertisers = [
            accounts.register_advertiser(
                s,
                name=f"Advertiser {i}",
                billing_mode=BillingMode.PREPAID if i % 2 else BillingMode.MONTHLY,
                lost_spot_policy=LostSpotPolicy.CREDIT,
            )
            for i in range(5)
        ]
        creative = {}
        for a in advertisers:
            c = Creative(
                advertiser_id=a.id,
                title="就近还伞",
                kind=CreativeKind.IMAGE,
                duration_ms=10_000,
                media_url="https://cdn.example.com/x.png",
                sha256="1" * 64,
                status=CreativeStatus.APPROVED,
                created_at=now,
                updated_at=now,
            )
            s.add(c)
            s.flush()
            creative[a.id] = c.id

        def draft(advertiser_id: int, spots: int) -> int:
            req = BookingRequest(
                name="race",
                spots_per_loop=spots,
                start_date=start,
                end_date=start + timedelta(days=DAYS - 1),
                dayparts="08-11",
                selection=Selection(kiosk_ids=KIOSKS),
                creative_ids=(creative[advertiser_id],),
            )
            return service.create_booking(s, advertiser_id, req).booking.id

        first = draft(advertisers[0].id, 4)
        contenders = [
            (advertisers[i % 5].id, draft(advertisers[i % 5].id, 1)) for i in range(CONTENDERS)
        ]
    with db.transaction(immediate=True) as s:
        service.confirm(s, advertisers[0].id, first)
    return first, contenders


def test_fifty_simultaneous_confirmations_never_oversell_and_every_loser_hears_why(
    racing_db: Database,
) -> None:
    first, contenders = _setup(racing_db)
    barrier = threading.Barrier(CONTENDERS)
    won: list[int] = []
    lost: dict[int, SoldOut] = {}
    failed: list[BaseException] = []
    lock = threading.Lock()

    def run(advertiser_id: int, booking_id: int) -> None:
        barrier.wait()
        try:
            with racing_db.transaction(immediate=True) as s:
                service.confirm(s, advertiser_id, booking_id)
            with lock:
                won.append(booking_id)
        except SoldOut as exc:
            with lock:
                lost[booking_id] = exc
        except BaseException as exc:  # anything else is a bug the test must show
            with lock:
                failed.append(exc)

    threads = [threading.Thread(target=run, args=c) for c in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert failed == []
    assert len(won) == 2  # 2 spots left in every hour, 1 spot per contender
    assert len(lost) == CONTENDERS - 2
    hours = len(KIOSKS) * DAYS * DAYPART_HOURS
    for exc in lost.values():
        assert exc.code == "sold_out", exc
        assert "full_hours" in exc.details, repr(exc.__cause__)[:2000]
        assert exc.details["kiosk_ids"] == list(KIOSKS)
        assert exc.details["full_hours"] == hours
        full = exc.details["full"]
        assert isinstance(full, list)
        assert {(f["kiosk_id"], f["local_hour"]) for f in full} == {
            (k, h) for k in KIOSKS for h in (8, 9, 10)
        }
        assert all(f["free"] == 0 for f in full)

    with racing_db.transaction() as s:
        assert s.scalar(select(func.count()).where(LoopHour.sold > LoopHour.capacity)) == 0
        sold = {
            (k, t): n
            for k, t, n in s.execute(select(LoopHour.kiosk_id, LoopHour.starts_at, LoopHour.sold))
        }
        reserved = dict(
            ((k, t), int(n))
            for k, t, n in s.execute(
                select(
                    Reservation.kiosk_id, Reservation.starts_at, func.sum(Reservation.spots)
                ).group_by(Reservation.kiosk_id, Reservation.starts_at)
            )
        )
        assert len(sold) == hours
        assert sold == reserved
        assert set(sold.values()) == {6}
        statuses = dict(s.execute(select(Booking.id, Booking.status)).all())
    assert statuses[first] is BookingStatus.CONFIRMED
    assert sorted(b for b, st in statuses.items() if st is BookingStatus.CONFIRMED) == sorted(
        [first, *won]
    )
    assert all(statuses[b] is BookingStatus.DRAFT for b in lost)
