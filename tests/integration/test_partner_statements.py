"""Partners' revenue-share statements against SQLite and PostgreSQL (SPEC §5): a scripted
month of rentals, forfeitures, ad invoices and credits, stated from the ledger and checked
against figures computed by hand; recomputed from the ledger; paid once through the WeChat
stand-in's profit sharing however often it is paid."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from server.billing import service as billing
from server.core.clock import clock
from server.core.db import Database
from server.core.money import DEPOSIT
from server.ledger import service as ledger
from server.models import (
    Advertiser,
    BillingMode,
    Booking,
    BookingKiosk,
    BookingStatus,
    DepositPayment,
    EntryKind,
    JournalEntry,
    LostSpotPolicy,
    Partner,
    Rental,
    RentalStatus,
)
from server.models.delivery import AdCredit
from server.models.partner import SettlementCycle
from server.models.revenue import PartnerStatement, StatementStatus
from server.payments.wechatpay import WeChatPayClient
from server.rentals import jobs as rental_jobs
from server.revenue import jobs, service
from server.revenue.service import PayoutAccountMissing, PayoutUnavailable
from server.wechat.standin import STANDIN_SETTLEMENT_TRANSACTION_ID, WeChatStandIn
from tests.integration.rows import add_kiosks, add_rider_with_deposit

SHANGHAI = "Asia/Shanghai"
PARTNER_MCHID = "1900000110"


def at_shanghai(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    """A Shanghai wall-clock time as UTC (UTC+8, no DST)."""
    return datetime(y, m, d, hh, mm, tzinfo=UTC) - timedelta(hours=8)


def move_clock_to(when: datetime) -> None:
    clock.reset()
    clock.advance(when - clock.now())


@pytest.fixture
def pay(standin: WeChatStandIn) -> Iterator[WeChatPayClient]:
    with WeChatPayClient(standin.pay_config()) as client:
        yield client


def partner_of(db: Database, kiosk_id: str) -> int:
    with db.transaction() as s:
        found = s.scalar(select(Partner.id).where(Partner.name == f"partner-{kiosk_id}"))
        assert found is not None
        return found


def set_terms(db: Database, partner_id: int, rate_bp: int, mchid: str | None = None) -> None:
    with db.transaction() as s:
        s.execute(
            update(Partner)
            .where(Partner.id == partner_id)
            .values(
                revenue_share_bp=rate_bp,
                settlement_cycle=SettlementCycle.MONTHLY,
                payout_mchid=mchid,
            )
        )


def overdue_rental(db: Database, kiosk_id: str, openid: str) -> None:
    """A rider with a held deposit whose umbrella, rented at `kiosk_id`, is past its 7-day
    deadline now: the next forfeiture sweep takes the deposit."""
    rider = add_rider_with_deposit(db, openid)
    now = clock.now()
    with db.transaction() as s:
        payment = s.scalar(select(DepositPayment.id).where(DepositPayment.rider_id == rider))
        assert payment is not None
        s.add(
            Rental(
                rider_id=rider,
                idempotency_key=f"rent-{openid}",
                deposit_payment_id=payment,
                deposit_fen=DEPOSIT,
                status=RentalStatus.ACTIVE,
                kiosk_id=kiosk_id,
                slot_no=1,
                created_at=now - timedelta(days=8),
                started_at=now - timedelta(days=8),
                deadline_at=now - timedelta(minutes=1),
                updated_at=now,
            )
        )


def forfeiture_at(db: Database, when: datetime, kiosk_id: str, openid: str) -> None:
    move_clock_to(when)
    overdue_rental(db, kiosk_id, openid)
    with db.transaction(immediate=True) as s:
        assert rental_jobs.forfeit_overdue(s, clock.now()) == 1


def prepaid_advertiser(db: Database) -> int:
    with db.transaction() as s:
        a = Advertiser(
            name="Acme",
            billing_mode=BillingMode.PREPAID,
            lost_spot_policy=LostSpotPolicy.CREDIT,
            created_at=clock.now(),
        )
        s.add(a)
        s.flush()
        return a.id


def confirmed_booking(
    db: Database, advertiser_id: int, when: datetime, prices: dict[str, int]
) -> None:
    """A booking confirmed (and billed: a prepaid order, open credits applied) at `when`."""
    move_clock_to(when)
    now = clock.now()
    start = when.date() + timedelta(days=1)
    with db.transaction() as s:
        b = Booking(
            advertiser_id=advertiser_id,
            name="Rainy season",
            status=BookingStatus.CONFIRMED,
            spots_per_loop=1,
            start_date=start,
            end_date=start + timedelta(days=6),
            dayparts="07-10",
            selection='{"kiosks": "picked"}',
            price_fen=sum(prices.values()),
            held_until=None,
            confirmed_at=now,
            ended_at=None,
            revision=1,
            created_at=now,
            updated_at=now,
        )
        s.add(b)
        s.flush()
        for kiosk_id, price in prices.items():
            s.add(BookingKiosk(booking_id=b.id, kiosk_id=kiosk_id, days=7, price_fen=price))
        s.flush()
        billing.on_booking_confirmed(s, b, billing_timezone=SHANGHAI)


def open_credit(db: Database, advertiser_id: int, kiosk_id: str, fen: int) -> None:
    with db.transaction() as s:
        booking = s.scalar(
            select(func.min(Booking.id)).where(Booking.advertiser_id == advertiser_id)
        )
        assert booking is not None
        s.add(
            AdCredit(
                advertiser_id=advertiser_id,
                booking_id=booking,
                kiosk_id=kiosk_id,
                local_date=clock.now().date(),
                spots=3,
                amount_fen=fen,
                created_at=clock.now(),
            )
        )


def run_job(db: Database, when: datetime) -> int:
    move_clock_to(when)
    with db.transaction(immediate=True) as s:
        return jobs.issue_statements(s, clock.now())


def statements(db: Database, partner_id: int) -> list[PartnerStatement]:
    with db.transaction() as s:
        return list(service.list_statements(s, partner_id=partner_id))[::-1]


def pay_statement(db: Database, statement_id: int, client: WeChatPayClient) -> PartnerStatement:
    with db.transaction(immediate=True) as s:
        return service.pay_statement(
            s,
            statement_id,
            client,
            transaction_id=STANDIN_SETTLEMENT_TRANSACTION_ID,
            actor="ops@example.com",
        )


@pytest.fixture
def scripted_month(db: Database) -> tuple[int, int]:
    """Partner A (kiosks KA1, KA2, 30 %) and partner B (KB1, 20 %) through October and
    November 2026 in Shanghai; returns their ids."""
    move_clock_to(at_shanghai(2026, 10, 20))
    add_kiosks(db, "KA1", "KA2")
    add_kiosks(db, "KB1")
    a, b = partner_of(db, "KA1"), partner_of(db, "KB1")
    set_terms(db, a, 3000)
    set_terms(db, b, 2000)
    advertiser = prepaid_advertiser(db)

    # October: one forfeiture at KA1, the last evening of the month.
    forfeiture_at(db, at_shanghai(2026, 10, 31, 23, 50), "KA1", "oct-a1")
    # November: a booking over all three kiosks, billed on the 5th.
    confirmed_booking(
        db, advertiser, at_shanghai(2026, 11, 5), {"KA1": 10_000, "KA2": 5_000, "KB1": 7_000}
    )
    # Forfeitures: two at KA1 (one at 23:30 on the 30th, still November), one at KA2, one at KB1.
    forfeiture_at(db, at_shanghai(2026, 11, 10), "KA1", "nov-a1")
    forfeiture_at(db, at_shanghai(2026, 11, 12), "KB1", "nov-b1")
    forfeiture_at(db, at_shanghai(2026, 11, 15), "KA2", "nov-a2")
    # Lost spots credited at KA1 (333 fen) and KB1 (100 fen), applied to the next order,
    # which bills KA2 only: the credits still belong to the kiosks that lost the spots.
    open_credit(db, advertiser, "KA1", 333)
    open_credit(db, advertiser, "KB1", 100)
    confirmed_booking(db, advertiser, at_shanghai(2026, 11, 20), {"KA2": 2_001})
    forfeiture_at(db, at_shanghai(2026, 11, 30, 23, 30), "KA1", "nov-a1-late")
    # December 1st, 00:30 in Shanghai: December's, not November's.
    forfeiture_at(db, at_shanghai(2026, 12, 1, 0, 30), "KA1", "dec-a1")
    return a, b


def test_a_scripted_month_is_stated_to_the_fen_as_computed_by_hand(
    db: Database, scripted_month: tuple[int, int]
) -> None:
    a, b = scripted_month
    # The grace (1 h) has passed at 02:00 on December 1st.
    assert run_job(db, at_shanghai(2026, 12, 1, 2, 0)) == 4

    october, november = statements(db, a)
    assert (october.period_start, october.period_end) == (date(2026, 10, 1), date(2026, 10, 31))
    assert (october.ad_revenue_fen, october.forfeited_fen, october.credits_fen) == (0, 3000, 0)
    assert october.share_fen == 900  # 3000 × 30 %

    assert (november.period_start, november.period_end) == (date(2026, 11, 1), date(2026, 11, 30))
    # By hand, partner A in November:
    #   ad revenue  KA1 10000, KA2 5000 + 2001 = 7001           -> 17001
    #   forfeited   KA1 2 × 3000, KA2 3000 (Dec 1st 00:30 not) -> 9000
    #   credits     KA1 333                                     -> 333
    #   base 17001 + 9000 - 333 = 25668; × 30 % = 7700.4 -> 7700 fen
    assert (november.ad_revenue_fen, november.forfeited_fen, november.credits_fen) == (
        17_001,
        9_000,
        333,
    )
    assert (november.base_fen, november.share_fen, november.carried_out_fen) == (25_668, 7_700, 0)
    assert (november.rate_bp, november.status) == (3000, StatementStatus.ISSUED)
    with db.transaction() as s:
        detail = service.statement_detail(s, november.id, partner_id=a)
    assert [
        (x.kiosk_id, x.ad_revenue_fen, x.forfeited_fen, x.credits_fen) for x in detail.lines
    ] == [
        ("KA1", 10_000, 6_000, 333),
        ("KA2", 7_001, 3_000, 0),
    ]

    # Partner B sees only KB1: 7000 + 3000 - 100 = 9900 × 20 % = 1980; October had nothing.
    b_october, b_november = statements(db, b)
    assert (b_october.base_fen, b_october.share_fen, b_october.status) == (
        0,
        0,
        StatementStatus.NOTHING_DUE,
    )
    assert (b_november.base_fen, b_november.share_fen) == (9_900, 1_980)

    # Held deposits are never revenue: the December forfeiture aside, riders who still hold a
    # deposit add nothing, and the share accrued is in the ledger.
    with db.transaction() as s:
        assert ledger.balance(s, f"partner:{a}:payable") == -(900 + 7_700)
        assert ledger.balance(s, "expense:partner_share") == 900 + 7_700 + 1_980


def test_a_statement_recomputed_from_the_ledger_gives_the_same_numbers(
    db: Database, scripted_month: tuple[int, int]
) -> None:
    a, b = scripted_month
    run_job(db, at_shanghai(2026, 12, 1, 2, 0))
    with db.transaction() as s:
        for statement in [
            *service.list_statements(s, partner_id=a),
            *service.list_statements(s, partner_id=b),
        ]:
            detail = service.statement_detail(s, statement.id, partner_id=None)
            assert service.recompute(s, statement) == service.stored_figures(detail)


def test_a_period_is_stated_once_however_often_the_job_runs(
    db: Database, scripted_month: tuple[int, int]
) -> None:
    a, _ = scripted_month
    assert run_job(db, at_shanghai(2026, 12, 1, 0, 30)) == 2  # within the grace: October only
    assert run_job(db, at_shanghai(2026, 12, 1, 2, 0)) == 2  # November
    assert run_job(db, at_shanghai(2026, 12, 1, 3, 0)) == 0
    assert [s.period_start.month for s in statements(db, a)] == [10, 11]


def test_paying_a_statement_twice_pays_once(
    db: Database, scripted_month: tuple[int, int], standin: WeChatStandIn, pay: WeChatPayClient
) -> None:
    a, _ = scripted_month
    run_job(db, at_shanghai(2026, 12, 1, 2, 0))
    november = statements(db, a)[1]
    with pytest.raises(PayoutAccountMissing):
        pay_statement(db, november.id, pay)
    set_terms(db, a, 3000, PARTNER_MCHID)

    first = pay_statement(db, november.id, pay)
    second = pay_statement(db, november.id, pay)
    assert first.status is StatementStatus.PAID
    assert second.status is StatementStatus.PAID
    assert first.out_order_no == second.out_order_no == f"PS{november.id:012d}"
    assert list(standin.profit_sharing_orders) == [first.out_order_no]
    order = standin.profit_sharing_orders[first.out_order_no]
    assert (order.amount, order.receivers[0]["account"]) == (7_700, PARTNER_MCHID)
    answer = pay.query_profit_sharing_order(first.out_order_no, STANDIN_SETTLEMENT_TRANSACTION_ID)
    assert answer["state"] == "FINISHED"
    assert answer["order_id"] == first.payout_order_id
    with db.transaction() as s:
        paid = s.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .where(JournalEntry.kind == EntryKind.PARTNER_SHARE_PAID)
        )
        assert paid == 1
        # October stays owed; November's payable is settled.
        assert ledger.balance(s, f"partner:{a}:payable") == -900
        assert ledger.balance(s, "wechat:profit_sharing") == -7_700


def test_a_payout_retried_after_a_stand_in_failure_or_a_lost_answer_splits_once(
    db: Database, scripted_month: tuple[int, int], standin: WeChatStandIn, pay: WeChatPayClient
) -> None:
    a, _ = scripted_month
    run_job(db, at_shanghai(2026, 12, 1, 2, 0))
    set_terms(db, a, 3000, PARTNER_MCHID)
    november = statements(db, a)[1]

    standin.fail_next("profit_sharing")  # refused before anything moved
    with pytest.raises(PayoutUnavailable):
        pay_statement(db, november.id, pay)
    assert standin.profit_sharing_orders == {}

    standin.lose_profit_sharing_answers = 1  # split, but the answer is lost
    with pytest.raises(PayoutUnavailable):
        pay_statement(db, november.id, pay)
    assert len(standin.profit_sharing_orders) == 1
    assert statements(db, a)[1].status is StatementStatus.ISSUED

    assert pay_statement(db, november.id, pay).status is StatementStatus.PAID
    assert len(standin.profit_sharing_orders) == 1
    assert sum(o.amount for o in standin.profit_sharing_orders.values()) == 7_700
