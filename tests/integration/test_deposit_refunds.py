"""Deposit refunds at the service level, against the WeChat stand-in over real HTTP and both
databases: lost answers, an unreachable WeChat Pay, and what the row locks serialize."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from server.core.clock import clock
from server.core.db import Database
from server.deposits import repository as repo
from server.deposits import rules, service
from server.deposits.jobs import retry_refunds
from server.ledger import service as ledger
from server.models import (
    DepositRefund,
    DepositStatus,
    EntryKind,
    JournalEntry,
    RefundStatus,
    Rental,
    RentalStatus,
    Rider,
)
from server.payments.wechatpay import WeChatPayClient
from server.wechat.standin import WeChatStandIn, openid_for
from tests.integration.rows import add_kiosks
from tests.services import free_port


@pytest.fixture
def pay(standin: WeChatStandIn) -> Iterator[WeChatPayClient]:
    with WeChatPayClient(standin.pay_config()) as client:
        yield client


def _closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}/nobody-listens"


def _held_deposit(db: Database, pay: WeChatPayClient, standin: WeChatStandIn) -> tuple[int, str]:
    """A rider whose 30-yuan deposit is paid at the stand-in and held here (through the
    verified order query); returns (rider id, out_trade_no)."""
    with db.transaction(immediate=True) as s:
        rider = Rider(openid=openid_for(standin.appid, "refund-rider"), created_at=clock.now())
        s.add(rider)
        s.flush()
        started = service.start_deposit(
            s, pay, rider, idempotency_key="tap", notify_url=_closed_url()
        )
        rider_id, out_trade_no = rider.id, started.payment.out_trade_no
    standin.pay(out_trade_no)
    with db.transaction(immediate=True) as s:
        payment = repo.lock_by_out_trade_no(s, out_trade_no)
        assert payment is not None
        assert service.settle_from_query(s, pay, payment)
    return rider_id, out_trade_no


def _withdraw(db: Database, rider_id: int) -> DepositRefund:
    with db.transaction(immediate=True) as s:
        withdrawal = service.withdraw(s, s.get_one(Rider, rider_id))
        assert withdrawal.created
        [refund] = withdrawal.refunds
        return refund


def _refund(db: Database) -> DepositRefund:
    with db.transaction() as s:
        return s.scalars(select(DepositRefund)).one()


def _job(db: Database, client: WeChatPayClient, now: datetime) -> int:
    with db.transaction(immediate=True) as s:
        return retry_refunds(s, client, now)


def _refunded_once(db: Database, out_refund_no: str) -> None:
    with db.transaction() as s:
        refunds = [
            (e.amount_fen, e.idempotency_key)
            for e in s.scalars(
                select(JournalEntry).where(JournalEntry.kind == EntryKind.DEPOSIT_REFUNDED)
            )
        ]
        assert refunds == [(3000, out_refund_no)]
        assert ledger.check_invariants(s) == []


def test_a_refund_whose_answer_was_lost_is_asked_again_and_paid_once(
    db: Database, pay: WeChatPayClient, standin: WeChatStandIn
) -> None:
    rider_id, out_trade_no = _held_deposit(db, pay, standin)
    refund = _withdraw(db, rider_id)

    # Our request reached WeChat Pay, but its answer never reached us (the process died or
    # the network dropped it): WeChat is refunding, our row still says pending.
    pay.refund(
        out_refund_no=refund.out_refund_no,
        refund_fen=3000,
        total_fen=3000,
        out_trade_no=out_trade_no,
    )
    assert _refund(db).status == RefundStatus.PENDING

    later = clock.now() + rules.SUBMIT_GRACE
    assert _job(db, pay, later) == 1
    assert _refund(db).status in (RefundStatus.PROCESSING, RefundStatus.SUCCEEDED)
    _job(db, pay, later + timedelta(minutes=2))

    settled = _refund(db)
    assert settled.status == RefundStatus.SUCCEEDED
    assert len(standin.refunds) == 1
    assert standin.find_order(out_trade_no).refunded == 3000
    _refunded_once(db, refund.out_refund_no)
    with db.transaction() as s:
        assert ledger.rider_deposit(s, str(rider_id)) == 0


def test_an_unreachable_wechat_pay_leaves_the_refund_pending_and_backs_off(
    db: Database, pay: WeChatPayClient, standin: WeChatStandIn
) -> None:
    rider_id, out_trade_no = _held_deposit(db, pay, standin)
    refund = _withdraw(db, rider_id)
    config = dataclasses.replace(
        standin.pay_config(), base_url=f"http://127.0.0.1:{free_port()}", timeout_s=2.0
    )

    with WeChatPayClient(config) as unreachable:
        before = clock.now()
        with db.transaction(immediate=True) as s:
            service.submit_refund(s, unreachable, refund.id, notify_url=None)
        first = _refund(db)
        assert (first.status, first.attempts) == (RefundStatus.PENDING, 1)
        assert first.last_error is not None
        assert first.last_error.startswith("WeChatPayUnavailable")
        assert first.next_attempt_at is not None
        assert first.next_attempt_at >= before + rules.refund_retry_delay(1)

        assert _job(db, unreachable, first.next_attempt_at) == 0
        second = _refund(db)
        assert second.attempts == 2
        assert second.next_attempt_at == first.next_attempt_at + rules.refund_retry_delay(2)

    assert standin.refunds == {}
    with db.transaction() as s:
        assert ledger.rider_deposit(s, str(rider_id)) == 3000
        assert ledger.check_invariants(s) == []

    # WeChat Pay is back: the next run asks (same out_refund_no), a later one settles.
    assert second.next_attempt_at is not None
    assert _job(db, pay, second.next_attempt_at) == 1
    assert list(standin.refunds) == [refund.out_refund_no]
    _job(db, pay, second.next_attempt_at + timedelta(minutes=2))
    assert _refund(db).status == RefundStatus.SUCCEEDED
    assert standin.find_order(out_trade_no).refunded == 3000
    _refunded_once(db, refund.out_refund_no)


# PostgreSQL only: SQLite has one writer at a time, so there is no row lock to skip and a
# second writer simply waits (the API tests cover the refusal there).
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_the_refund_job_skips_a_refund_another_transaction_holds(
    db: Database, pay: WeChatPayClient, standin: WeChatStandIn
) -> None:
    rider_id, _ = _held_deposit(db, pay, standin)
    refund = _withdraw(db, rider_id)
    later = clock.now() + rules.SUBMIT_GRACE

    with db.transaction() as holder:
        assert repo.lock_refund(holder, refund.id) is not None
        assert _job(db, pay, later) == 0
        assert standin.refunds == {}

    assert _job(db, pay, later) == 1
    assert len(standin.refunds) == 1


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_a_withdrawal_waits_for_a_rental_holding_the_payment_lock_then_is_refused(
    db: Database, pay: WeChatPayClient, standin: WeChatStandIn
) -> None:
    rider_id, _ = _held_deposit(db, pay, standin)
    add_kiosks(db, "K-REFUND-1")
    outcome: list[BaseException | str] = []

    def withdraw() -> None:
        try:
            with db.transaction() as s:
                service.withdraw(s, s.get_one(Rider, rider_id))
            outcome.append("withdrawn")
        except BaseException as exc:
            outcome.append(exc)

    with db.transaction() as rent:
        # What the rent path does: lock the held payment, then open the rental.
        [payment] = repo.lock_held_for_rider(rent, rider_id)
        now = clock.now()
        rent.add(
            Rental(
                rider_id=rider_id,
                idempotency_key="rent-1",
                deposit_payment_id=payment.id,
                deposit_fen=3000,
                status=RentalStatus.EJECTING,
                kiosk_id="K-REFUND-1",
                slot_no=1,
                attempts=1,
                created_at=now,
                reminders_sent=0,
                updated_at=now,
            )
        )
        rent.flush()
        waiting = threading.Thread(target=withdraw)
        waiting.start()
        time.sleep(0.3)
        assert waiting.is_alive(), "the withdrawal did not wait for the payment lock"
    waiting.join(10)

    [result] = outcome
    assert isinstance(result, service.RentalOpen)
    with db.transaction() as s:
        assert s.scalars(select(DepositRefund)).all() == []
        assert repo.latest_with_status(s, rider_id, DepositStatus.HELD) is not None
    assert standin.refunds == {}
