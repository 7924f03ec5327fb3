"""Every query of the creatives domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from server.models import (
    Advertiser,
    AuditLog,
    Booking,
    BookingCreative,
    Creative,
    CreativeStatus,
)


def by_id(session: Session, creative_id: int, *, lock: bool = False) -> Creative | None:
    stmt = select(Creative).where(Creative.id == creative_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def owned(
    session: Session, advertiser_id: int, creative_id: int, *, lock: bool = False
) -> Creative | None:
    stmt = select(Creative).where(
        Creative.id == creative_id, Creative.advertiser_id == advertiser_id
    )
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def for_advertiser(
    session: Session,
    advertiser_id: int,
    *,
    status: CreativeStatus | None,
    limit: int,
    before_id: int | None,
) -> Sequence[Creative]:
    stmt = select(Creative).where(Creative.advertiser_id == advertiser_id)
    if status is not None:
        stmt = stmt.where(Creative.status == status)
    if before_id is not None:
        stmt = stmt.where(Creative.id < before_id)
    return session.scalars(stmt.order_by(Creative.id.desc()).limit(limit)).all()


def review_queue(
    session: Session, *, status: CreativeStatus | None, advertiser_id: int | None, limit: int
) -> Sequence[tuple[Creative, str]]:
    """Pending creatives first, oldest first (a queue); then the others, newest first."""
    stmt = select(Creative, Advertiser.name).join(
        Advertiser, Advertiser.id == Creative.advertiser_id
    )
    if status is not None:
        stmt = stmt.where(Creative.status == status)
    if advertiser_id is not None:
        stmt = stmt.where(Creative.advertiser_id == advertiser_id)
    pending_first = case((Creative.status == CreativeStatus.PENDING, 0), else_=1)
    queue_order = case((Creative.status == CreativeStatus.PENDING, Creative.id), else_=-Creative.id)
    rows = session.execute(stmt.order_by(pending_first, queue_order).limit(limit)).all()
    return [(c, name) for c, name in rows]


def advertiser_name(session: Session, advertiser_id: int) -> str:
    advertiser = session.get(Advertiser, advertiser_id)
    return advertiser.name if advertiser is not None else ""


def approved_ids(session: Session, advertiser_id: int, creative_ids: Sequence[int]) -> set[int]:
    if not creative_ids:
        return set()
    return set(
        session.scalars(
            select(Creative.id).where(
                Creative.advertiser_id == advertiser_id,
                Creative.id.in_(sorted(set(creative_ids))),
                Creative.status == CreativeStatus.APPROVED,
            )
        )
    )


def touch_bookings_using(session: Session, creative_id: int, now: datetime) -> list[int]:
    """Bump the revision of every booking that uses the creative (the playlist compiler
    recompiles the kiosks of bookings whose `updated_at` moved)."""
    booking_ids = sorted(
        session.scalars(
            select(BookingCreative.booking_id).where(BookingCreative.creative_id == creative_id)
        )
    )
    if booking_ids:
        session.execute(
            update(Booking)
            .where(Booking.id.in_(booking_ids))
            .values(revision=Booking.revision + 1, updated_at=now)
            .execution_options(synchronize_session="fetch")
        )
    return booking_ids


def add(session: Session, creative: Creative) -> None:
    session.add(creative)
    session.flush()


def add_audit(session: Session, entry: AuditLog) -> None:
    session.add(entry)
    session.flush()


def audit_for(session: Session, creative_id: int) -> Sequence[AuditLog]:
    return session.scalars(
        select(AuditLog).where(AuditLog.subject == f"creative:{creative_id}").order_by(AuditLog.id)
    ).all()


def used_sha256s(session: Session, sha256s: Sequence[str]) -> set[str]:
    """Those of `sha256s` some creative uses, whatever its status (a rejected creative can
    be resubmitted with the same file)."""
    used: set[str] = set()
    wanted = sorted(set(sha256s))
    for i in range(0, len(wanted), 1000):
        used.update(
            session.scalars(
                select(Creative.sha256).where(Creative.sha256.in_(wanted[i : i + 1000])).distinct()
            )
        )
    return used
