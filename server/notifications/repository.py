"""Every query of the notification outbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from server.models import Kiosk, Notification, NotificationStatus, Rider


def insert_pending(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert pending notifications, skipping any whose dedup_key exists (one statement)."""
    if not rows:
        return
    values = [
        {
            "rider_id": r["rider_id"],
            "kind": r["kind"],
            "dedup_key": r["dedup_key"],
            "payload": r["payload"],
            "status": NotificationStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": r["now"],
            "created_at": r["now"],
        }
        for r in rows
    ]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = pg_insert(Notification).on_conflict_do_nothing(index_elements=["dedup_key"])
    elif dialect == "sqlite":
        stmt = sqlite_insert(Notification).on_conflict_do_nothing(index_elements=["dedup_key"])
    else:  # pragma: no cover - the two supported databases are above
        stmt = insert(Notification)
    session.execute(stmt, values)


#: The partial index's own predicate, as a literal: PostgreSQL can use a partial index only
#: when it can prove the query's condition implies the index's, which a bound parameter
#: (`status = $1`) does not allow once the plan is generic.
_PENDING = text("notifications.status = 'pending'")


def lock_next_due(session: Session, now: datetime) -> tuple[Notification, str] | None:
    """The pending notification due longest ago, with its rider's openid, row-locked until
    the transaction ends. Rows another sender holds are skipped (PostgreSQL `FOR UPDATE OF
    notifications SKIP LOCKED`; SQLite has one writer at a time and ignores it)."""
    row = session.execute(
        select(Notification, Rider.openid)
        .join(Rider, Rider.id == Notification.rider_id)
        .where(_PENDING, Notification.next_attempt_at <= now)
        .order_by(Notification.next_attempt_at, Notification.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=Notification)
    ).first()
    return None if row is None else (row[0], row[1])


def kiosk_names(session: Session, kiosk_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(kiosk_ids))
    if not ids:
        return {}
    rows = session.execute(select(Kiosk.id, Kiosk.name).where(Kiosk.id.in_(ids))).all()
    return {kiosk_id: name for kiosk_id, name in rows}


def for_rider(
    session: Session, rider_id: int, *, limit: int, offset: int
) -> tuple[list[Notification], int]:
    """The rider's notifications, newest first, and how many there are."""
    rows = session.scalars(
        select(Notification)
        .where(Notification.rider_id == rider_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(
        select(func.count()).select_from(Notification).where(Notification.rider_id == rider_id)
    )
    return list(rows), int(total or 0)
