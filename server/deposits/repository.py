from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import (
    OPEN_STATUSES,
    DepositPayment,
    DepositRefund,
    DepositStatus,
    RefundStatus,
    Rental,
)


def by_idempotency_key(session: Session, rider_id: int, key: str) -> DepositPayment | None:
    return session.scalars(
        select(DepositPayment).where(
            DepositPayment.rider_id == rider_id, DepositPayment.idempotency_key == key
        )
    ).first()


def latest_with_status(
    session: Session, rider_id: int, status: DepositStatus
) -> DepositPayment | None:
    return session.scalars(
        select(DepositPayment)
        .where(DepositPayment.rider_id == rider_id, DepositPayment.status == status)
        .order_by(DepositPayment.id.desc())
    ).first()


def lock_by_out_trade_no(session: Session, out_trade_no: str) -> DepositPayment | None:
    """The payment, row-locked until commit (PostgreSQL; SQLite has one writer), and re-read
    so a settlement that committed while we waited for the lock is seen."""
    return session.scalars(
        select(DepositPayment)
        .where(DepositPayment.out_trade_no == out_trade_no)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def lock_pending_older_than(session: Session, cutoff: datetime) -> list[DepositPayment]:
    """Pending payments created before `cutoff`; rows another process is settling right now
    are skipped (they are being taken care of)."""
    return list(
        session.scalars(
            select(DepositPayment)
            .where(
                DepositPayment.status == DepositStatus.PENDING,
                DepositPayment.created_at < cutoff,
            )
            .order_by(DepositPayment.id)
            .with_for_update(skip_locked=True)
        ).all()
    )


def lock_held_for_rider(session: Session, rider_id: int) -> list[DepositPayment]:
    """The rider's held payments, row-locked until commit (the rent path locks the same rows,
    so a rental and a withdrawal serialize) and re-read after the wait."""
    return list(
        session.scalars(
            select(DepositPayment)
            .where(DepositPayment.rider_id == rider_id, DepositPayment.status == DepositStatus.HELD)
            .order_by(DepositPayment.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
    )


def lock_payment(session: Session, payment_id: int) -> DepositPayment | None:
    return session.scalars(
        select(DepositPayment)
        .where(DepositPayment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def latest_settled_payment(session: Session, rider_id: int) -> DepositPayment | None:
    """The rider's newest payment that WeChat Pay confirmed (whatever happened to it since)."""
    return session.scalars(
        select(DepositPayment)
        .where(
            DepositPayment.rider_id == rider_id,
            DepositPayment.status != DepositStatus.PENDING,
        )
        .order_by(DepositPayment.id.desc())
    ).first()


def has_open_rental(session: Session, rider_id: int) -> bool:
    found = session.scalar(
        select(Rental.id)
        .where(Rental.rider_id == rider_id, Rental.status.in_(OPEN_STATUSES))
        .limit(1)
    )
    return found is not None


def lock_refund(session: Session, refund_id: int) -> DepositRefund | None:
    return session.scalars(
        select(DepositRefund)
        .where(DepositRefund.id == refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def lock_refund_by_out_refund_no(session: Session, out_refund_no: str) -> DepositRefund | None:
    """The refund, row-locked until commit and re-read, so a notification and the retry job
    racing each other see each other's committed work."""
    return session.scalars(
        select(DepositRefund)
        .where(DepositRefund.out_refund_no == out_refund_no)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def unfinished_refunds(session: Session, rider_id: int) -> list[DepositRefund]:
    """Refunds not yet paid out: pending, processing, or abnormal (waiting for an operator)."""
    return list(
        session.scalars(
            select(DepositRefund)
            .where(
                DepositRefund.rider_id == rider_id,
                DepositRefund.status != RefundStatus.SUCCEEDED,
            )
            .order_by(DepositRefund.id)
        ).all()
    )


def latest_refund(session: Session, rider_id: int) -> DepositRefund | None:
    return session.scalars(
        select(DepositRefund)
        .where(DepositRefund.rider_id == rider_id)
        .order_by(DepositRefund.id.desc())
    ).first()


def refunds_with_status(
    session: Session, status: RefundStatus | None, limit: int
) -> list[DepositRefund]:
    query = select(DepositRefund).order_by(DepositRefund.id.desc()).limit(limit)
    if status is not None:
        query = query.where(DepositRefund.status == status)
    return list(session.scalars(query).all())


def lock_refunds_due(
    session: Session, status: RefundStatus, now: datetime, limit: int
) -> list[DepositRefund]:
    """Refunds in `status` whose next attempt is due, oldest first; rows another process is
    working on right now are skipped (they are being taken care of)."""
    return list(
        session.scalars(
            select(DepositRefund)
            .where(
                DepositRefund.status == status,
                DepositRefund.next_attempt_at.is_not(None),
                DepositRefund.next_attempt_at <= now,
            )
            .order_by(DepositRefund.next_attempt_at, DepositRefund.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
    )
