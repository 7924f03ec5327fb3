"""Every rebalancing query."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from server.core.db import any_of
from server.models import Kiosk, Rental, Slot, SlotEventRecord, SlotStatus
from server.models.operations import RebalancingTask, TaskStatus


def flows(session: Session, partner_id: int, since: datetime) -> dict[str, tuple[int, int]]:
    """kiosk id -> (rentals started there, returns there) since `since`."""
    started = (
        select(Rental.kiosk_id, func.count())
        .join(Kiosk, Kiosk.id == Rental.kiosk_id)
        .where(Kiosk.partner_id == partner_id, Rental.started_at >= since)
        .group_by(Rental.kiosk_id)
    )
    returned = (
        select(Rental.return_kiosk_id, func.count())
        .join(Kiosk, Kiosk.id == Rental.return_kiosk_id)
        .where(Kiosk.partner_id == partner_id, Rental.returned_at >= since)
        .group_by(Rental.return_kiosk_id)
    )
    out: dict[str, tuple[int, int]] = {}
    for r in session.execute(started):
        out[r[0]] = (int(r[1]), 0)
    for back in session.execute(returned):
        if back[0] is not None:
            out[back[0]] = (out.get(back[0], (0, 0))[0], int(back[1]))
    return out


def kiosk_partners(session: Session, kiosk_ids: Collection[str]) -> dict[str, tuple[int, str]]:
    """kiosk id -> (partner id, name) for those that exist."""
    rows = session.execute(
        select(Kiosk.id, Kiosk.partner_id, Kiosk.name).where(any_of(session, Kiosk.id, kiosk_ids))
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def add(session: Session, task: RebalancingTask) -> None:
    session.add(task)
    session.flush()


def get(session: Session, task_id: int, *, for_update: bool = False) -> RebalancingTask | None:
    stmt = select(RebalancingTask).where(RebalancingTask.id == task_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def list_tasks(
    session: Session, partner_id: int | None, status: TaskStatus | None, limit: int
) -> list[RebalancingTask]:
    stmt = select(RebalancingTask)
    if partner_id is not None:
        stmt = stmt.where(RebalancingTask.partner_id == partner_id)
    if status is not None:
        stmt = stmt.where(RebalancingTask.status == status)
    return list(session.scalars(stmt.order_by(RebalancingTask.id.desc()).limit(limit)))


def names(session: Session, kiosk_ids: Collection[str]) -> dict[str, str]:
    if not kiosk_ids:
        return {}
    rows = session.execute(select(Kiosk.id, Kiosk.name).where(any_of(session, Kiosk.id, kiosk_ids)))
    return {r[0]: r[1] for r in rows}


def slot_event_counts(
    session: Session, kiosk_ids: Collection[str], since: datetime, until: datetime
) -> dict[tuple[str, str], int]:
    """(kiosk id, "in" | "out") -> slot events the server received in [since, until]."""
    ev = SlotEventRecord
    rows = session.execute(
        select(ev.kiosk_id, ev.kind, func.count())
        .where(
            any_of(session, ev.kiosk_id, kiosk_ids),
            ev.received_at >= since,
            ev.received_at <= until,
        )
        .group_by(ev.kiosk_id, ev.kind)
    )
    return {(r[0], r[1]): int(r[2]) for r in rows}


def umbrellas_now(session: Session, kiosk_ids: Collection[str]) -> dict[str, int]:
    rows = session.execute(
        select(Slot.kiosk_id, func.sum(case((Slot.status == SlotStatus.UMBRELLA, 1), else_=0)))
        .where(any_of(session, Slot.kiosk_id, kiosk_ids))
        .group_by(Slot.kiosk_id)
    )
    return {r[0]: int(r[1] or 0) for r in rows}
