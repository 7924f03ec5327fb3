from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import DepositPayment, DepositStatus


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
