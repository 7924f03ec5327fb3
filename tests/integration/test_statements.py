"""Monthly statements and prepaid orders against SQLite and PostgreSQL (SPEC §4 Billing):
the statement job with a moved clock, proration across months and time zones, credits
applied once, and several scheduler processes issuing at the same moment."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from server.billing import jobs
from server.billing import service as billing
from server.core.clock import clock
from server.core.db import Database
from server.models import (
    Advertiser,
    BillingMode,
    Booking,
    BookingKiosk,
    BookingStatus,
    Kiosk,
    LostSpotPolicy,
)
from server.models.billing import Invoice, InvoiceKind, InvoiceLine, InvoiceStatus
from server.models.delivery import AdCredit
from tests.integration.rows import add_kiosks

SHANGHAI = "Asia/Shanghai"
#: 2026-12-01 00:30 in Shanghai: November's statements are due.
DEC_1_SHANGHAI = datetime(2026, 11, 30, 16, 30, tzinfo=UTC)
#: 2027-01-01 00:30 in Shanghai: December's.
JAN_1_SHANGHAI = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)


def _move_clock_to(at: datetime) -> None:
    clock.reset()
    clock.advance(at - clock.now())


def _advertiser(db: Database, name: str, mode: BillingMode) -> int:
    with db.transaction() as s:
        a = Advertiser(
            name=name,
            billing_mode=mode,
            lost_spot_policy=LostSpotPolicy.CREDIT,
            created_at=clock.now(),
        )
        s.add(a)
        s.flush()
        return a.id


def _kiosks(db: Database, zones: dict[str, str]) -> None:
    add_kiosks(db, *zones)
    with db.transaction() as s:
        for kiosk_id, tz in zones.items():
            s.execute(update(Kiosk).where(Kiosk.id == kiosk_id).values(timezone=tz))


def _booking(
    db: Database,
    advertiser_id: int,
    start: date,
    end: date,
    prices: dict[str, int],
    *,
    status: BookingStatus = BookingStatus.CONFIRMED,
    spots: int = 2,
) -> int:
    now = clock.now()
    days = (end - start).days + 1
    with db.transaction() as s:
        b = Booking(
            advertiser_id=advertiser_id,
            name=f"Rainy season {start:%m-%d}",
            status=status,
            spots_per_loop=spots,
            start_date=start,
            end_date=end,
            dayparts="07-10,17-20",
            selection='{"kiosks": "picked"}',
            price_fen=sum(prices.values()),
            held_until=None,
            confirmed_at=now if status is BookingStatus.CONFIRMED else None,
            ended_at=None,
            revision=1,
            created_at=now,
            updated_at=now,
        )
        s.add(b)
        s.flush()
        for kiosk_id, price in prices.items():
            s.add(BookingKiosk(booking_id=b.id, kiosk_id=kiosk_id, days=days, price_fen=price))
        return b.id


def _credit(
    db: Database, advertiser_id: int, booking_id: int, kiosk_id: str, day: date, fen: int
) -> int:
    with db.transaction() as s:
        c = AdCredit(
            advertiser_id=advertiser_id,
            booking_id=booking_id,
            kiosk_id=kiosk_id,
            local_date=day,
            spots=3,
            amount_fen=fen,
            created_at=clock.now(),
        )
        s.add(c)
        s.flush()
        return c.id


def _run_job(db: Database, now: datetime) -> int:
    with db.transaction(immediate=True) as s:
        return jobs.issue_monthly_statements(s, now, billing_timezone=SHANGHAI)


def _statements(db: Database, advertiser_id: int) -> list[Invoice]:
    with db.transaction() as s:
        return list(
            s.scalars(
                select(Invoice)
                .where(
                    Invoice.advertiser_id == advertiser_id,
                    Invoice.kind == InvoiceKind.MONTHLY_STATEMENT,
                )
                .order_by(Invoice.period_start)
            )
        )


def _lines(db: Database, invoice_id: int) -> list[InvoiceLine]:
    with db.transaction() as s:
        return list(
            s.scalars(
                select(InvoiceLine)
                .where(InvoiceLine.invoice_id == invoice_id)
                .order_by(InvoiceLine.kiosk_id, InvoiceLine.booking_id)
            )
        )


def test_statement_job_issues_on_the_first_in_shanghai_once_however_often_it_runs(
    db: Database,
) -> None:
    adv = _advertiser(db, "Rain Co", BillingMode.MONTHLY)
    _kiosks(db, {"K-A": SHANGHAI})
    _booking(db, adv, date(2026, 11, 10), date(2026, 11, 19), {"K-A": 12_000})

    # 2026-11-30 23:30 in Shanghai: November is not over there yet, nothing is due.
    assert _run_job(db, DEC_1_SHANGHAI - timedelta(hours=1)) == 0
    assert _statements(db, adv) == []

    _move_clock_to(DEC_1_SHANGHAI)
    assert _run_job(db, DEC_1_SHANGHAI) == 1
    assert _run_job(db, DEC_1_SHANGHAI + timedelta(hours=1)) == 0
    assert _run_job(db, DEC_1_SHANGHAI + timedelta(days=5)) == 0

    [statement] = _statements(db, adv)
    assert (statement.period_start, statement.period_end) == (date(2026, 11, 1), date(2026, 11, 30))
    assert (statement.issued_on, statement.due_on) == (date(2026, 12, 1), date(2026, 12, 20))
    assert statement.status is InvoiceStatus.ISSUED
    assert (statement.subtotal_fen, statement.credits_fen, statement.total_fen) == (
        12_000,
        0,
        12_000,
    )
    [line] = _lines(db, statement.id)
    assert (line.kiosk_id, line.days, line.amount_fen) == ("K-A", 10, 12_000)


def test_a_missed_first_is_caught_up_later_in_the_month_still_dated_the_first(
    db: Database,
) -> None:
    adv = _advertiser(db, "Late Co", BillingMode.MONTHLY)
    _kiosks(db, {"K-A": SHANGHAI})
    _booking(db, adv, date(2026, 11, 1), date(2026, 11, 30), {"K-A": 30_000})
    assert _run_job(db, DEC_1_SHANGHAI + timedelta(days=9)) == 1
    [statement] = _statements(db, adv)
    assert (statement.issued_on, statement.due_on) == (date(2026, 12, 1), date(2026, 12, 20))


def test_a_booking_across_two_months_and_two_time_zones_bills_exactly_its_price(
    db: Database,
) -> None:
    adv = _advertiser(db, "Ferry Co", BillingMode.MONTHLY)
    _kiosks(db, {"K-SH": SHANGHAI, "K-LA": "America/Los_Angeles"})
    # 10 local days on each kiosk: Nov 27..30 and Dec 1..6, whatever the kiosk's zone.
    prices = {"K-SH": 10_003, "K-LA": 7_777}
    booking_id = _booking(db, adv, date(2026, 11, 27), date(2026, 12, 6), prices)

    # Issued at Shanghai's midnight, when it is still the morning of Nov 30 in Los Angeles:
    # the kiosk's days belong to months by the kiosk's own dates, not the billing zone's.
    assert _run_job(db, DEC_1_SHANGHAI) == 1
    assert _run_job(db, JAN_1_SHANGHAI) == 1
    november, december = _statements(db, adv)

    nov = {line.kiosk_id: line for line in _lines(db, november.id)}
    dec = {line.kiosk_id: line for line in _lines(db, december.id)}
    assert {k: (v.first_day, v.last_day, v.days) for k, v in nov.items()} == {
        "K-SH": (date(2026, 11, 27), date(2026, 11, 30), 4),
        "K-LA": (date(2026, 11, 27), date(2026, 11, 30), 4),
    }
    assert {k: (v.first_day, v.last_day, v.days) for k, v in dec.items()} == {
        "K-SH": (date(2026, 12, 1), date(2026, 12, 6), 6),
        "K-LA": (date(2026, 12, 1), date(2026, 12, 6), 6),
    }
    # 10_003 = 10 x 1000 + 3 and 7_777 = 10 x 777 + 7: the first day (November) carries
    # the remainder.
    assert (nov["K-SH"].amount_fen, dec["K-SH"].amount_fen) == (4_003, 6_000)
    assert (nov["K-LA"].amount_fen, dec["K-LA"].amount_fen) == (3_115, 4_662)
    for kiosk_id, price in prices.items():
        assert nov[kiosk_id].amount_fen + dec[kiosk_id].amount_fen == price
        assert nov[kiosk_id].booking_id == dec[kiosk_id].booking_id == booking_id
    assert november.subtotal_fen + december.subtotal_fen == sum(prices.values())


def test_credits_are_applied_once_across_two_statements_oldest_first_and_whole(
    db: Database,
) -> None:
    adv = _advertiser(db, "Credit Co", BillingMode.MONTHLY)
    _kiosks(db, {"K-A": SHANGHAI})
    nov_booking = _booking(db, adv, date(2026, 11, 21), date(2026, 11, 30), {"K-A": 1_000})
    _booking(db, adv, date(2026, 12, 1), date(2026, 12, 31), {"K-A": 31_000})
    small = _credit(db, adv, nov_booking, "K-A", date(2026, 11, 22), 300)
    too_big = _credit(db, adv, nov_booking, "K-A", date(2026, 11, 23), 800)
    tiny = _credit(db, adv, nov_booking, "K-A", date(2026, 11, 24), 100)

    assert _run_job(db, DEC_1_SHANGHAI) == 1
    # After November's statement, a credit for a December day.
    later = _credit(db, adv, nov_booking, "K-A", date(2026, 11, 29), 50)
    assert _run_job(db, JAN_1_SHANGHAI) == 1
    assert _run_job(db, JAN_1_SHANGHAI + timedelta(minutes=5)) == 0

    november, december = _statements(db, adv)
    # 1000 fen: 300 fits, 800 no longer does (700 left), 100 does.
    assert (november.subtotal_fen, november.credits_fen, november.total_fen) == (1_000, 400, 600)
    # The 800 waited and December took it, with the later 50.
    assert (december.subtotal_fen, december.credits_fen, december.total_fen) == (
        31_000,
        850,
        30_150,
    )
    with db.transaction() as s:
        applied = {cid: inv for cid, inv in s.execute(select(AdCredit.id, AdCredit.invoice_id))}
    assert applied == {
        small: november.id,
        tiny: november.id,
        too_big: december.id,
        later: december.id,
    }


def test_credits_covering_a_whole_statement_leave_nothing_to_pay(db: Database) -> None:
    adv = _advertiser(db, "Covered Co", BillingMode.MONTHLY)
    _kiosks(db, {"K-A": SHANGHAI})
    booking_id = _booking(db, adv, date(2026, 11, 30), date(2026, 11, 30), {"K-A": 500})
    _credit(db, adv, booking_id, "K-A", date(2026, 11, 30), 500)
    assert _run_job(db, DEC_1_SHANGHAI) == 1
    [statement] = _statements(db, adv)
    assert (statement.total_fen, statement.status) == (0, InvoiceStatus.PAID)
    assert statement.payment_reference == billing.NOTHING_DUE


def test_only_confirmed_bookings_of_monthly_advertisers_are_on_statements(db: Database) -> None:
    monthly = _advertiser(db, "Monthly Co", BillingMode.MONTHLY)
    prepaid = _advertiser(db, "Prepaid Co", BillingMode.PREPAID)
    _kiosks(db, {"K-A": SHANGHAI})
    _booking(db, monthly, date(2026, 11, 1), date(2026, 11, 2), {"K-A": 200})
    _booking(
        db, monthly, date(2026, 11, 3), date(2026, 11, 4), {"K-A": 9_999}, status=BookingStatus.HELD
    )
    _booking(
        db,
        monthly,
        date(2026, 11, 5),
        date(2026, 11, 6),
        {"K-A": 8_888},
        status=BookingStatus.RELEASED,
    )
    _booking(db, prepaid, date(2026, 11, 1), date(2026, 11, 2), {"K-A": 7_777})
    _booking(db, monthly, date(2026, 12, 1), date(2026, 12, 2), {"K-A": 6_666})

    assert _run_job(db, DEC_1_SHANGHAI) == 1
    [statement] = _statements(db, monthly)
    assert statement.subtotal_fen == 200
    assert _statements(db, prepaid) == []


def test_a_monthly_advertiser_with_nothing_in_the_month_gets_no_statement(db: Database) -> None:
    adv = _advertiser(db, "Quiet Co", BillingMode.MONTHLY)
    _kiosks(db, {"K-A": SHANGHAI})
    _booking(db, adv, date(2026, 12, 10), date(2026, 12, 12), {"K-A": 300})
    assert _run_job(db, DEC_1_SHANGHAI) == 0
    assert _statements(db, adv) == []


@pytest.mark.parametrize("runners", [2, 4])
def test_scheduler_processes_running_at_the_same_moment_issue_each_statement_once(
    db: Database, runners: int
) -> None:
    advertisers = [_advertiser(db, f"Race Co {i}", BillingMode.MONTHLY) for i in range(3)]
    _kiosks(db, {"K-A": SHANGHAI})
    for adv in advertisers:
        booking_id = _booking(db, adv, date(2026, 11, 1), date(2026, 11, 30), {"K-A": 3_000})
        _credit(db, adv, booking_id, "K-A", date(2026, 11, 15), 100)

    barrier = threading.Barrier(runners)
    issued: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            issued.append(_run_job(db, DEC_1_SHANGHAI))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(runners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sum(issued) == len(advertisers)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Invoice)) == len(advertisers)
        assert s.scalar(select(func.sum(Invoice.credits_fen))) == 100 * len(advertisers)
        assert s.scalar(select(func.count()).where(AdCredit.invoice_id.is_(None))) == 0


def _confirmed(db: Database, booking_id: int) -> Booking:
    with db.transaction() as s:
        booking = s.get(Booking, booking_id)
        assert booking is not None
        return booking


def test_a_prepaid_booking_is_billed_once_on_confirmation_with_a_line_per_kiosk(
    db: Database,
) -> None:
    adv = _advertiser(db, "Prepaid Co", BillingMode.PREPAID)
    _kiosks(db, {"K-A": SHANGHAI, "K-B": "Asia/Urumqi"})
    _move_clock_to(datetime(2026, 11, 26, 17, 0, tzinfo=UTC))  # Nov 27, 01:00 in Shanghai
    booking_id = _booking(
        db, adv, date(2026, 11, 28), date(2026, 12, 4), {"K-A": 7_000, "K-B": 3_500}
    )
    older = _booking(db, adv, date(2026, 11, 1), date(2026, 11, 2), {"K-A": 1})
    _credit(db, adv, older, "K-A", date(2026, 11, 1), 250)

    for _ in range(2):
        with db.transaction(immediate=True) as s:
            booking = s.get(Booking, booking_id)
            assert booking is not None
            billing.on_booking_confirmed(s, booking, billing_timezone=SHANGHAI)

    with db.transaction() as s:
        [order] = s.scalars(select(Invoice).where(Invoice.booking_id == booking_id)).all()
    assert order.kind is InvoiceKind.PREPAID_ORDER
    assert (order.issued_on, order.due_on) == (date(2026, 11, 27), date(2026, 11, 27))
    assert (order.period_start, order.period_end) == (date(2026, 11, 28), date(2026, 12, 4))
    assert (order.subtotal_fen, order.credits_fen, order.total_fen) == (10_500, 250, 10_250)
    lines = _lines(db, order.id)
    assert [(x.kiosk_id, x.days, x.amount_fen) for x in lines] == [
        ("K-A", 7, 7_000),
        ("K-B", 7, 3_500),
    ]


def test_a_monthly_advertisers_confirmation_bills_nothing_until_the_statement(
    db: Database,
) -> None:
    adv = _advertiser(db, "Monthly Co", BillingMode.MONTHLY)
    _kiosks(db, {"K-A": SHANGHAI})
    booking_id = _booking(db, adv, date(2026, 11, 28), date(2026, 12, 4), {"K-A": 7_000})
    with db.transaction() as s:
        booking = s.get(Booking, booking_id)
        assert booking is not None
        billing.on_booking_confirmed(s, booking, billing_timezone=SHANGHAI)
        assert s.scalar(select(func.count()).select_from(Invoice)) == 0


def test_an_unconfirmed_booking_is_refused_and_nothing_is_billed(db: Database) -> None:
    adv = _advertiser(db, "Held Co", BillingMode.PREPAID)
    _kiosks(db, {"K-A": SHANGHAI})
    booking_id = _booking(
        db, adv, date(2026, 12, 1), date(2026, 12, 2), {"K-A": 100}, status=BookingStatus.HELD
    )
    with db.transaction() as s:
        booking = s.get(Booking, booking_id)
        assert booking is not None
        with pytest.raises(billing.BookingNotConfirmed):
            billing.on_booking_confirmed(s, booking)
        assert s.scalar(select(func.count()).select_from(Invoice)) == 0
