"""Every GBFS query: one statement per feed, set-wise over the whole fleet.

The slot counts follow the kiosk registry's (server/kiosks/repository.py: a slot is
`umbrella`, `empty` or `fault`, counted in SQL with GROUP BY); a test checks both agree.
This query differs in what it selects: only the columns a feed needs (no ORM entities, so
10,000 kiosks cost one round trip and no object loading), and faulty slots split by whether
they hold a jammed umbrella (GBFS counts those as disabled vehicles, the rest as disabled
docks).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Integer, and_, case, func, select, type_coerce
from sqlalchemy.orm import Session

from server.gbfs.rules import KioskAvailability, KioskSite
from server.models import Kiosk, KioskState, Slot, SlotStatus
from server.models.base import UTCDateTime


def _count(condition: Any) -> Any:
    return func.sum(case((condition, 1), else_=0))


def availability(session: Session) -> list[KioskAvailability]:
    """Every registered kiosk (offline ones included) with its slot counts, by kiosk id."""
    counts = (
        select(
            Slot.kiosk_id.label("kiosk_id"),
            _count(Slot.status == SlotStatus.UMBRELLA).label("umbrellas"),
            _count(Slot.status == SlotStatus.EMPTY).label("empty"),
            _count(and_(Slot.status == SlotStatus.FAULT, Slot.tag.is_not(None))).label(
                "faulty_with_umbrella"
            ),
            _count(and_(Slot.status == SlotStatus.FAULT, Slot.tag.is_(None))).label("faulty_empty"),
        )
        .group_by(Slot.kiosk_id)
        .subquery("slot_counts")
    )
    stmt = (
        select(
            Kiosk.id,
            type_coerce(func.coalesce(KioskState.online, False), Boolean),
            type_coerce(func.coalesce(KioskState.last_seen_at, Kiosk.created_at), UTCDateTime),
            type_coerce(func.coalesce(counts.c.umbrellas, 0), Integer),
            type_coerce(func.coalesce(counts.c.empty, 0), Integer),
            type_coerce(func.coalesce(counts.c.faulty_with_umbrella, 0), Integer),
            type_coerce(func.coalesce(counts.c.faulty_empty, 0), Integer),
        )
        .outerjoin(KioskState, KioskState.kiosk_id == Kiosk.id)
        .outerjoin(counts, counts.c.kiosk_id == Kiosk.id)
        .order_by(Kiosk.id)
    )
    # Core execution (no ORM result handling), rows taken as they are (the column types
    # give bool, UTC datetime and int on both databases): this runs for every kiosk of the
    # fleet on each build (bench/gbfs_station_status).
    return list(map(KioskAvailability._make, session.connection().execute(stmt)))


def sites(session: Session) -> list[KioskSite]:
    """Every registered kiosk's public registry facts, by kiosk id."""
    stmt = select(
        Kiosk.id, Kiosk.name, Kiosk.lat, Kiosk.lon, Kiosk.address, Kiosk.slot_count
    ).order_by(Kiosk.id)
    return [
        KioskSite(kiosk_id=r[0], name=r[1], lat=r[2], lon=r[3], address=r[4], slot_count=r[5])
        for r in session.execute(stmt)
    ]
