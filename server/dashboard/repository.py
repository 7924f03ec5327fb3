"""Every dashboard query: set-wise aggregates over a partner's kiosks (one GROUP BY per
source), never a query per kiosk."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select, true
from sqlalchemy.orm import Session

from server.core.db import any_of
from server.models import Kiosk, KioskState, Partner, Rental, RentalStatus, Slot, SlotStatus
from server.models.delivery import DeliveryDay


@dataclass(frozen=True, slots=True)
class KioskLive:
    id: str
    name: str
    partner_id: int
    lat: float
    lon: float
    address: str
    venue_type: str
    timezone: str
    capacity: int
    online: bool
    last_seen_at: datetime | None
    online_changed_at: datetime | None
    umbrellas: int
    empty_slots: int
    faulty_slots: int


def partner_exists(session: Session, partner_id: int) -> bool:
    return session.get(Partner, partner_id) is not None


def _scope(
    session: Session, partner_id: int | None, kiosk_ids: Collection[str] | None
) -> ColumnElement[bool]:
    conds: list[ColumnElement[bool]] = []
    if partner_id is not None:
        conds.append(Kiosk.partner_id == partner_id)
    if kiosk_ids is not None:
        conds.append(any_of(session, Kiosk.id, kiosk_ids))
    return and_(true(), *conds)


def live(
    session: Session, partner_id: int | None, kiosk_ids: Collection[str] | None = None
) -> list[KioskLive]:
    scope = _scope(session, partner_id, kiosk_ids)
    counts = (
        select(
            Slot.kiosk_id.label("kiosk_id"),
            func.sum(case((Slot.status == SlotStatus.UMBRELLA, 1), else_=0)).label("umbrellas"),
            func.sum(case((Slot.status == SlotStatus.EMPTY, 1), else_=0)).label("empty"),
            func.sum(case((Slot.status == SlotStatus.FAULT, 1), else_=0)).label("faulty"),
        )
        .join(Kiosk, Kiosk.id == Slot.kiosk_id)
        .where(scope)
        .group_by(Slot.kiosk_id)
        .subquery("slot_counts")
    )
    stmt = (
        select(
            Kiosk.id,
            Kiosk.name,
            Kiosk.partner_id,
            Kiosk.lat,
            Kiosk.lon,
            Kiosk.address,
            Kiosk.venue_type,
            Kiosk.timezone,
            Kiosk.slot_count,
            func.coalesce(KioskState.online, False),
            KioskState.last_seen_at,
            KioskState.online_changed_at,
            func.coalesce(counts.c.umbrellas, 0),
            func.coalesce(counts.c.empty, 0),
            func.coalesce(counts.c.faulty, 0),
        )
        .outerjoin(KioskState, KioskState.kiosk_id == Kiosk.id)
        .outerjoin(counts, counts.c.kiosk_id == Kiosk.id)
        .where(scope)
        .order_by(Kiosk.id)
    )
    return [
        KioskLive(
            id=r[0],
            name=r[1],
            partner_id=r[2],
            lat=r[3],
            lon=r[4],
            address=r[5],
            venue_type=r[6],
            timezone=r[7],
            capacity=r[8],
            online=bool(r[9]),
            last_seen_at=r[10],
            online_changed_at=r[11],
            umbrellas=int(r[12]),
            empty_slots=int(r[13]),
            faulty_slots=int(r[14]),
        )
        for r in session.execute(stmt)
    ]


def _by_kiosk(
    session: Session,
    stmt: Any,
    kiosk_col: Any,
    partner_id: int | None,
    timezone: str | None,
    kiosk_ids: Collection[str] | None,
) -> dict[str, tuple[int, ...]]:
    conds = [_scope(session, partner_id, kiosk_ids)]
    if timezone is not None:
        conds.append(Kiosk.timezone == timezone)
    stmt = stmt.join(Kiosk, Kiosk.id == kiosk_col).where(*conds).group_by(kiosk_col)
    return {r[0]: tuple(int(v or 0) for v in r[1:]) for r in session.execute(stmt)}


def rentals_started(
    session: Session,
    partner_id: int | None,
    *,
    timezone: str | None,
    day_start: datetime,
    week_start: datetime,
    kiosk_ids: Collection[str] | None = None,
) -> dict[str, tuple[int, ...]]:
    """kiosk id -> (started today, started this week)."""
    stmt = select(
        Rental.kiosk_id,
        func.sum(case((Rental.started_at >= day_start, 1), else_=0)),
        func.count(),
    ).where(Rental.started_at >= week_start)
    return _by_kiosk(session, stmt, Rental.kiosk_id, partner_id, timezone, kiosk_ids)


def forfeitures(
    session: Session,
    partner_id: int | None,
    *,
    timezone: str | None,
    day_start: datetime,
    week_start: datetime,
    kiosk_ids: Collection[str] | None = None,
) -> dict[str, tuple[int, ...]]:
    """kiosk id (where the rental started) -> (forfeited today, forfeited this week)."""
    stmt = select(
        Rental.kiosk_id,
        func.sum(case((Rental.forfeited_at >= day_start, 1), else_=0)),
        func.count(),
    ).where(Rental.status == RentalStatus.FORFEITED, Rental.forfeited_at >= week_start)
    return _by_kiosk(session, stmt, Rental.kiosk_id, partner_id, timezone, kiosk_ids)


def ad_plays(
    session: Session,
    partner_id: int | None,
    *,
    timezone: str | None,
    today: date,
    kiosk_ids: Collection[str] | None = None,
) -> dict[str, tuple[int, ...]]:
    """kiosk id -> (booked and make-good plays on the kiosk's local `today`,)."""
    stmt = select(
        DeliveryDay.kiosk_id, func.sum(DeliveryDay.played + DeliveryDay.make_good_played)
    ).where(DeliveryDay.local_date == today)
    return _by_kiosk(session, stmt, DeliveryDay.kiosk_id, partner_id, timezone, kiosk_ids)


def change_signal(session: Session, partner_id: int | None) -> tuple[Any, ...]:
    """Cheap to poll, and different whenever a kiosk of the partner went online or offline
    or a slot of it changed (slots' `updated_at` is the server's time of the change)."""
    scope = _scope(session, partner_id, None)
    states = (
        select(
            func.count(),
            func.sum(case((KioskState.online, 1), else_=0)),
            func.max(KioskState.online_changed_at),
        )
        .join(Kiosk, Kiosk.id == KioskState.kiosk_id)
        .where(scope)
    )
    slots = select(func.max(Slot.updated_at)).join(Kiosk, Kiosk.id == Slot.kiosk_id).where(scope)
    return (*session.execute(states).one(), session.execute(slots).scalar())
