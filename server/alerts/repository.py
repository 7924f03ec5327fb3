"""Every alert query."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from server.alerts.rules import AlertKey, FaultySlot, Finding, KioskCondition
from server.models import Kiosk, KioskState, Slot, SlotStatus
from server.models.operations import Alert


def conditions(session: Session, now: datetime) -> list[KioskCondition]:
    """What every kiosk of the fleet looks like now: two set-wise queries."""
    counts = (
        select(
            Slot.kiosk_id.label("kiosk_id"),
            func.sum(case((Slot.status == SlotStatus.UMBRELLA, 1), else_=0)).label("umbrellas"),
            func.sum(case((Slot.status == SlotStatus.EMPTY, 1), else_=0)).label("free"),
        )
        .group_by(Slot.kiosk_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Kiosk.id,
            Kiosk.partner_id,
            Kiosk.created_at,
            KioskState.online,
            KioskState.online_changed_at,
            KioskState.last_seen_at,
            func.coalesce(counts.c.umbrellas, 0),
            func.coalesce(counts.c.free, 0),
        )
        .outerjoin(KioskState, KioskState.kiosk_id == Kiosk.id)
        .outerjoin(counts, counts.c.kiosk_id == Kiosk.id)
        .order_by(Kiosk.id)
    ).all()
    faulty: dict[str, list[FaultySlot]] = {}
    for kiosk_id, slot_no, observed_at, updated_at in session.execute(
        select(Slot.kiosk_id, Slot.slot_no, Slot.observed_at, Slot.updated_at)
        .where(Slot.status == SlotStatus.FAULT)
        .order_by(Slot.kiosk_id, Slot.slot_no)
    ):
        faulty.setdefault(kiosk_id, []).append(FaultySlot(slot_no, observed_at or updated_at))
    return [
        KioskCondition(
            kiosk_id=r[0],
            partner_id=r[1],
            online=bool(r[3]),
            offline_since=r[4] or r[5] or r[2],
            umbrellas=int(r[6]),
            free_slots=int(r[7]),
            faulty=tuple(faulty.get(r[0], ())),
        )
        for r in rows
    ]


def open_keys(session: Session) -> dict[AlertKey, int]:
    rows = session.execute(
        select(Alert.kiosk_id, Alert.kind, Alert.slot_no, Alert.id).where(Alert.closed_at.is_(None))
    ).all()
    return {AlertKey(r[0], r[1], r[2]): r[3] for r in rows}


def insert_open(session: Session, found: Sequence[Finding], now: datetime) -> int:
    """Open alerts; one that another scheduler opened meanwhile is skipped (the partial
    unique index on open alerts), so running the job twice at once opens it once."""
    if not found:
        return 0
    rows = [
        {
            "partner_id": f.partner_id,
            "kiosk_id": f.key.kiosk_id,
            "kind": f.key.kind,
            "slot_no": f.key.slot_no,
            "message": f.message,
            "opened_at": now,
        }
        for f in found
    ]
    dialect = session.get_bind().dialect.name
    insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(Alert).on_conflict_do_nothing(
        index_elements=["kiosk_id", "kind", "slot_no"], index_where=text("closed_at IS NULL")
    )
    return len(session.execute(stmt.returning(Alert.id), rows).all())


def close(session: Session, ids: Collection[int], now: datetime) -> int:
    if not ids:
        return 0
    result: Any = session.execute(
        update(Alert)
        .where(Alert.id.in_(sorted(ids)), Alert.closed_at.is_(None))
        .values(closed_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def _listing(partner_id: int | None) -> Select[Alert, str]:
    stmt = select(Alert, Kiosk.name).join(Kiosk, Kiosk.id == Alert.kiosk_id)
    return stmt if partner_id is None else stmt.where(Alert.partner_id == partner_id)


def open_alerts(session: Session, partner_id: int | None) -> list[tuple[Alert, str]]:
    stmt = _listing(partner_id).where(Alert.closed_at.is_(None))
    return [(r[0], r[1]) for r in session.execute(stmt.order_by(Alert.id.desc()))]


def closed_alerts(
    session: Session, partner_id: int | None, since: datetime, limit: int
) -> list[tuple[Alert, str]]:
    stmt = _listing(partner_id).where(Alert.closed_at >= since)
    stmt = stmt.order_by(Alert.closed_at.desc(), Alert.id.desc()).limit(limit)
    return [(r[0], r[1]) for r in session.execute(stmt)]


def get(session: Session, alert_id: int) -> tuple[Alert, str] | None:
    r = session.execute(
        select(Alert, Kiosk.name)
        .join(Kiosk, Kiosk.id == Alert.kiosk_id)
        .where(Alert.id == alert_id)
    ).first()
    return None if r is None else (r[0], r[1])


def open_counts(session: Session, partner_id: int | None) -> dict[str, int]:
    stmt = (
        select(Alert.kiosk_id, func.count())
        .where(Alert.closed_at.is_(None))
        .group_by(Alert.kiosk_id)
    )
    if partner_id is not None:
        stmt = stmt.where(Alert.partner_id == partner_id)
    return {r[0]: int(r[1]) for r in session.execute(stmt)}


def signal(session: Session, partner_id: int | None) -> tuple[Any, ...]:
    """Changes whenever an alert of the partner opens, closes or is acknowledged."""
    stmt = select(
        func.count(), func.max(Alert.id), func.max(Alert.closed_at), func.max(Alert.acked_at)
    ).select_from(Alert)
    if partner_id is not None:
        stmt = stmt.where(Alert.partner_id == partner_id)
    row = session.execute(stmt).one()
    return tuple(row)
