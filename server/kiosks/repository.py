"""Every kiosk query. Slot counts are computed in SQL (GROUP BY), never in Python loops."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.orm import Session

from server.kiosks.rules import BoundingBox
from server.models import Kiosk, KioskState, Slot, SlotStatus


@dataclass(frozen=True)
class KioskRow:
    kiosk: Kiosk
    online: bool
    last_seen_at: datetime | None
    umbrellas: int
    free_slots: int
    faulty_slots: int


@dataclass(frozen=True)
class KioskFilters:
    partner_id: int | None = None
    venue_type: str | None = None
    online: bool | None = None
    has_umbrellas: bool | None = None
    has_free_slots: bool | None = None
    bbox: BoundingBox | None = None


def _slot_counts() -> Any:
    return (
        select(
            Slot.kiosk_id.label("kiosk_id"),
            func.sum(case((Slot.status == SlotStatus.UMBRELLA, 1), else_=0)).label("umbrellas"),
            func.sum(case((Slot.status == SlotStatus.EMPTY, 1), else_=0)).label("free_slots"),
            func.sum(case((Slot.status == SlotStatus.FAULT, 1), else_=0)).label("faulty_slots"),
        )
        .group_by(Slot.kiosk_id)
        .subquery("slot_counts")
    )


def _base(counts: Any) -> Select[Any]:
    umbrellas = func.coalesce(counts.c.umbrellas, 0)
    free = func.coalesce(counts.c.free_slots, 0)
    faulty = func.coalesce(counts.c.faulty_slots, 0)
    online = func.coalesce(KioskState.online, False)
    return (
        select(
            Kiosk,
            online.label("online"),
            KioskState.last_seen_at,
            umbrellas.label("umbrellas"),
            free.label("free_slots"),
            faulty.label("faulty_slots"),
        )
        .outerjoin(KioskState, KioskState.kiosk_id == Kiosk.id)
        .outerjoin(counts, counts.c.kiosk_id == Kiosk.id)
    )


def _row(r: Any) -> KioskRow:
    return KioskRow(
        kiosk=r[0],
        online=bool(r.online),
        last_seen_at=r.last_seen_at,
        umbrellas=int(r.umbrellas),
        free_slots=int(r.free_slots),
        faulty_slots=int(r.faulty_slots),
    )


def _filtered(f: KioskFilters, counts: Any) -> Select[Any]:
    stmt = _base(counts)
    conds = []
    if f.partner_id is not None:
        conds.append(Kiosk.partner_id == f.partner_id)
    if f.venue_type is not None:
        conds.append(Kiosk.venue_type == f.venue_type)
    if f.online is not None:
        conds.append(func.coalesce(KioskState.online, False) == f.online)
    if f.has_umbrellas is not None:
        n = func.coalesce(counts.c.umbrellas, 0)
        conds.append(n > 0 if f.has_umbrellas else n == 0)
    if f.has_free_slots is not None:
        n = func.coalesce(counts.c.free_slots, 0)
        conds.append(n > 0 if f.has_free_slots else n == 0)
    if f.bbox is not None:
        conds.append(Kiosk.lat.between(f.bbox.min_lat, f.bbox.max_lat))
        conds.append(Kiosk.lon.between(f.bbox.min_lon, f.bbox.max_lon))
    return stmt.where(and_(*conds)) if conds else stmt


def list_kiosks(
    session: Session, filters: KioskFilters, *, limit: int, offset: int
) -> tuple[list[KioskRow], int]:
    counts = _slot_counts()
    stmt = _filtered(filters, counts)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.execute(stmt.order_by(Kiosk.id).limit(limit).offset(offset)).all()
    return [_row(r) for r in rows], int(total)


def nearby_candidates(
    session: Session,
    *,
    lat: float,
    lon: float,
    box: BoundingBox,
    lon_scale: float,
    need: str,
    limit: int,
) -> list[KioskRow]:
    """Online kiosks inside `box` with stock for `need`, nearest first by a planar
    approximation (exact haversine ordering is done by the caller on these rows)."""
    counts = _slot_counts()
    filters = KioskFilters(
        online=True,
        bbox=box,
        has_umbrellas=True if need == "umbrella" else None,
        has_free_slots=True if need == "free_slot" else None,
    )
    dlat = Kiosk.lat - lat
    dlon = (Kiosk.lon - lon) * lon_scale
    stmt = _filtered(filters, counts).order_by(dlat * dlat + dlon * dlon, Kiosk.id).limit(limit)
    return [_row(r) for r in session.execute(stmt).all()]


def kiosk_row(session: Session, kiosk_id: str) -> KioskRow | None:
    counts = _slot_counts()
    r = session.execute(_base(counts).where(Kiosk.id == kiosk_id)).first()
    return _row(r) if r is not None else None


def get_kiosk(session: Session, kiosk_id: str) -> Kiosk | None:
    return session.get(Kiosk, kiosk_id)


def get_state(session: Session, kiosk_id: str) -> KioskState | None:
    return session.get(KioskState, kiosk_id)


def slots_of(session: Session, kiosk_id: str) -> Sequence[Slot]:
    return session.scalars(
        select(Slot).where(Slot.kiosk_id == kiosk_id).order_by(Slot.slot_no)
    ).all()


def existing_ids(session: Session, ids: Iterable[str]) -> set[str]:
    wanted = list(ids)
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        found.update(session.scalars(select(Kiosk.id).where(Kiosk.id.in_(chunk))))
    return found


def credentials(session: Session) -> list[tuple[str, str]]:
    """(kiosk id, `$7$` hash) for every kiosk: the broker password file's kiosk lines."""
    rows = session.execute(select(Kiosk.id, Kiosk.mqtt_password_hash).order_by(Kiosk.id)).all()
    return [(r[0], r[1]) for r in rows]


def add(session: Session, *objects: object) -> None:
    session.add_all(objects)
