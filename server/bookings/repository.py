"""Every booking and inventory query.

Reserving is set-wise: a booking on 200 kiosks x 30 days x 15 hours is 90,000 loop hours,
so on PostgreSQL each step is one statement over `unnest()`ed arrays (one parameter per
column, the same statement text whatever the size); SQLite, whose write transactions are
serialised anyway, gets executemany batches.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Row,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from server.core.db import any_of, any_of_slices
from server.models import (
    Booking,
    BookingCreative,
    BookingKiosk,
    BookingStatus,
    Creative,
    Kiosk,
    LoopHour,
    Partner,
    Reservation,
    VenuePrice,
)

#: (kiosk id, UTC start of the local hour)
HourKey = tuple[str, datetime]
#: (kiosk id, starts_at, capacity, sold) of a loop hour
HourRow = Row[str, datetime, int, int]

_LOOP_HOURS: Table = LoopHour.__table__  # type: ignore[assignment]
_RESERVATIONS: Table = Reservation.__table__  # type: ignore[assignment]


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _columns(keys: Sequence[HourKey]) -> dict[str, list[Any]]:
    return {"k": [k for k, _ in keys], "t": [t for _, t in keys]}


# --- kiosks, prices, creatives -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KioskInfo:
    id: str
    lat: float
    lon: float
    venue_type: str
    timezone: str
    loop_seconds: int
    spot_seconds: int
    open_hour: int
    close_hour: int

    @property
    def capacity(self) -> int:
        return self.loop_seconds // self.spot_seconds


_KIOSK_COLUMNS = (
    Kiosk.id,
    Kiosk.lat,
    Kiosk.lon,
    Kiosk.venue_type,
    Kiosk.timezone,
    Kiosk.loop_seconds,
    Kiosk.spot_seconds,
    Kiosk.open_hour,
    Kiosk.close_hour,
)


def select_kiosks(
    session: Session,
    *,
    ids: Collection[str] | None = None,
    regions: Collection[str] | None = None,
    venue_types: Collection[str] | None = None,
    bbox: tuple[float, float, float, float] | None = None,
) -> list[KioskInfo]:
    """Kiosks matching every criterion given (ids, partner regions, venue types, a
    min_lat/min_lon/max_lat/max_lon box), ordered by id."""
    conds = []
    if regions:
        conds.append(
            Kiosk.partner_id.in_(select(Partner.id).where(Partner.region.in_(sorted(regions))))
        )
    if venue_types:
        conds.append(Kiosk.venue_type.in_(sorted(venue_types)))
    if bbox is not None:
        conds.append(Kiosk.lat.between(bbox[0], bbox[2]))
        conds.append(Kiosk.lon.between(bbox[1], bbox[3]))
    stmt = select(*_KIOSK_COLUMNS).where(and_(True, *conds)).order_by(Kiosk.id)
    if ids is None:
        return [KioskInfo(*r) for r in session.execute(stmt)]
    found: list[KioskInfo] = []
    for clause in any_of_slices(session, Kiosk.id, ids):
        found.extend(KioskInfo(*r) for r in session.execute(stmt.where(clause)))
    found.sort(key=lambda k: k.id)
    return found


def existing_kiosk_ids(session: Session, ids: Collection[str]) -> set[str]:
    found: set[str] = set()
    for clause in any_of_slices(session, Kiosk.id, ids):
        found.update(session.scalars(select(Kiosk.id).where(clause)))
    return found


def venue_prices(session: Session) -> dict[str, int]:
    rows = session.execute(select(VenuePrice.venue_type, VenuePrice.fen_per_spot_day))
    return {v: int(p) for v, p in rows}


def upsert_venue_price(session: Session, venue_type: str, fen: int, now: datetime) -> None:
    row = session.get(VenuePrice, venue_type, with_for_update=True)
    if row is None:
        session.add(VenuePrice(venue_type=venue_type, fen_per_spot_day=fen, updated_at=now))
    else:
        row.fen_per_spot_day = fen
        row.updated_at = now
    session.flush()


def creatives(session: Session, ids: Collection[int]) -> list[Creative]:
    if not ids:
        return []
    return list(session.scalars(select(Creative).where(Creative.id.in_(sorted(ids)))))


# --- bookings ----------------------------------------------------------------------------------


def get_booking(session: Session, booking_id: int, *, lock: bool = False) -> Booking | None:
    stmt = select(Booking).where(Booking.id == booking_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def list_bookings(
    session: Session,
    *,
    advertiser_id: int | None,
    status: BookingStatus | None,
    limit: int,
    offset: int,
) -> tuple[list[Booking], int]:
    conds = []
    if advertiser_id is not None:
        conds.append(Booking.advertiser_id == advertiser_id)
    if status is not None:
        conds.append(Booking.status == status)
    where = and_(True, *conds)
    total = session.scalar(select(func.count()).select_from(Booking).where(where)) or 0
    rows = session.scalars(
        select(Booking).where(where).order_by(Booking.id.desc()).limit(limit).offset(offset)
    )
    return list(rows), int(total)


def booking_kiosks(session: Session, booking_ids: Collection[int]) -> dict[int, list[BookingKiosk]]:
    out: dict[int, list[BookingKiosk]] = {b: [] for b in booking_ids}
    if not booking_ids:
        return out
    rows = session.scalars(
        select(BookingKiosk)
        .where(any_of(session, BookingKiosk.booking_id, booking_ids))
        .order_by(BookingKiosk.booking_id, BookingKiosk.kiosk_id)
    )
    for row in rows:
        out[row.booking_id].append(row)
    return out


def booking_creative_ids(session: Session, booking_ids: Collection[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {b: [] for b in booking_ids}
    if not booking_ids:
        return out
    rows = session.execute(
        select(BookingCreative.booking_id, BookingCreative.creative_id)
        .where(any_of(session, BookingCreative.booking_id, booking_ids))
        .order_by(BookingCreative.booking_id, BookingCreative.creative_id)
    )
    for booking_id, creative_id in rows:
        out[booking_id].append(creative_id)
    return out


def replace_booking_kiosks(session: Session, booking_id: int, rows: Sequence[BookingKiosk]) -> None:
    session.execute(delete(BookingKiosk).where(BookingKiosk.booking_id == booking_id))
    session.add_all(rows)
    session.flush()


def claim_expired_holds(session: Session, now: datetime, limit: int) -> list[Booking]:
    """Held bookings whose hold ran out, row-locked; rows another sweep holds are skipped."""
    stmt = (
        select(Booking)
        .where(Booking.status == BookingStatus.HELD, Booking.held_until <= now)
        .order_by(Booking.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


# --- inventory: reserving and returning spots --------------------------------------------------

_PG_ENSURE = text(
    "INSERT INTO loop_hours (kiosk_id, starts_at, capacity, sold) "
    "SELECT w.k, w.t, w.c, 0 FROM unnest(CAST(:k AS varchar[]), CAST(:t AS timestamptz[]), "
    "CAST(:c AS smallint[])) AS w(k, t, c) ORDER BY w.k, w.t "
    "ON CONFLICT DO NOTHING"
)

#: Locks every wanted row in (kiosk, hour) order, so two reservations over overlapping
#: hours wait for each other instead of deadlocking, and answers the rows that are full.
#: MATERIALIZED keeps the "full" filter above the lock: pushed below it, the filter would
#: judge the rows by the values before a concurrent reservation committed, and skip
#: locking them.
_PG_LOCK_FULL = text(
    "WITH locked AS MATERIALIZED ("
    " SELECT lh.kiosk_id, lh.starts_at, lh.capacity, lh.sold FROM loop_hours lh"
    " JOIN unnest(CAST(:k AS varchar[]), CAST(:t AS timestamptz[])) AS w(k, t)"
    " ON lh.kiosk_id = w.k AND lh.starts_at = w.t"
    " ORDER BY lh.kiosk_id, lh.starts_at FOR UPDATE OF lh) "
    "SELECT kiosk_id, starts_at, capacity, sold FROM locked "
    "WHERE sold + :n > capacity ORDER BY kiosk_id, starts_at"
)

_PG_ADD_SOLD = text(
    "UPDATE loop_hours lh SET sold = lh.sold + :n "
    "FROM unnest(CAST(:k AS varchar[]), CAST(:t AS timestamptz[])) AS w(k, t) "
    "WHERE lh.kiosk_id = w.k AND lh.starts_at = w.t"
)

_PG_INSERT_RESERVATIONS = text(
    "INSERT INTO reservations (booking_id, kiosk_id, starts_at, spots) "
    "SELECT :b, w.k, w.t, :n FROM unnest(CAST(:k AS varchar[]), CAST(:t AS timestamptz[])) "
    "AS w(k, t)"
)

_PG_LOCK_RESERVED = text(
    "SELECT lh.kiosk_id FROM loop_hours lh JOIN reservations r"
    " ON r.kiosk_id = lh.kiosk_id AND r.starts_at = lh.starts_at"
    " WHERE r.booking_id = ANY(CAST(:b AS bigint[]))"
    " ORDER BY lh.kiosk_id, lh.starts_at FOR UPDATE OF lh"
)

_PG_RETURN_SOLD = text(
    "UPDATE loop_hours lh SET sold = lh.sold - g.spots FROM ("
    " SELECT kiosk_id, starts_at, sum(spots) AS spots FROM reservations"
    " WHERE booking_id = ANY(CAST(:b AS bigint[])) GROUP BY kiosk_id, starts_at) AS g "
    "WHERE lh.kiosk_id = g.kiosk_id AND lh.starts_at = g.starts_at"
)

_SQLITE_BATCH = 5000


def _batches(rows: Sequence[Any], size: int = _SQLITE_BATCH) -> Iterator[Sequence[Any]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def ensure_loop_hours(session: Session, rows: Sequence[tuple[str, datetime, int]]) -> None:
    """Create the missing (kiosk, hour) rows with the kiosk's capacity and nothing sold;
    `rows` sorted by kiosk and hour, so concurrent callers insert in the same order."""
    if not rows:
        return
    if _is_pg(session):
        session.execute(
            _PG_ENSURE,
            {"k": [r[0] for r in rows], "t": [r[1] for r in rows], "c": [r[2] for r in rows]},
        )
        return
    stmt = sqlite.insert(_LOOP_HOURS).on_conflict_do_nothing()
    for batch in _batches(rows):
        session.execute(
            stmt, [{"kiosk_id": k, "starts_at": t, "capacity": c, "sold": 0} for k, t, c in batch]
        )


def _sqlite_rows_of(session: Session, keys: Sequence[HourKey], extra: Any = None) -> list[HourRow]:
    """The loop-hour rows of `keys` (optionally narrowed by `extra`): per kiosk, a range
    query filtered in Python, which SQLite answers from the primary key."""
    by_kiosk: dict[str, list[datetime]] = {}
    for k, t in keys:
        by_kiosk.setdefault(k, []).append(t)
    wanted = set(keys)
    out: list[HourRow] = []
    cols = (LoopHour.kiosk_id, LoopHour.starts_at, LoopHour.capacity, LoopHour.sold)
    for kiosk_id, times in sorted(by_kiosk.items()):
        stmt = select(*cols).where(
            LoopHour.kiosk_id == kiosk_id,
            LoopHour.starts_at.between(min(times), max(times)),
        )
        if extra is not None:
            stmt = stmt.where(extra)
        out.extend(
            r for r in session.execute(stmt.order_by(LoopHour.starts_at)) if (r[0], r[1]) in wanted
        )
    return out


def lock_full_hours(
    session: Session, keys: Sequence[HourKey], spots: int
) -> list[tuple[str, datetime, int, int]]:
    """Lock the loop hours of `keys` (sorted) and return those where `spots` more would
    exceed the capacity, as (kiosk id, starts_at, capacity, sold)."""
    rows: Sequence[Any]
    if _is_pg(session):
        rows = session.execute(_PG_LOCK_FULL, {**_columns(keys), "n": spots}).all()
    else:  # the transaction holds SQLite's write lock already (BEGIN IMMEDIATE)
        rows = _sqlite_rows_of(session, keys, LoopHour.sold + spots > LoopHour.capacity)
    return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


def add_sold(session: Session, booking_id: int, keys: Sequence[HourKey], spots: int) -> None:
    """`sold += spots` on every hour and a reservation of `spots` for the booking. The CHECK
    `sold <= capacity` refuses the UPDATE if a row is full after all."""
    if _is_pg(session):
        cols = _columns(keys)
        session.execute(_PG_ADD_SOLD, {**cols, "n": spots})
        session.execute(_PG_INSERT_RESERVATIONS, {**cols, "n": spots, "b": booking_id})
        return
    conn = session.connection()
    bump = (
        update(_LOOP_HOURS)
        .where(
            _LOOP_HOURS.c.kiosk_id == bindparam("k"),
            _LOOP_HOURS.c.starts_at == bindparam("t"),
        )
        .values(sold=_LOOP_HOURS.c.sold + spots)
    )
    for batch in _batches(keys):
        conn.execute(bump, [{"k": k, "t": t} for k, t in batch])
        conn.execute(
            _RESERVATIONS.insert(),
            [
                {"booking_id": booking_id, "kiosk_id": k, "starts_at": t, "spots": spots}
                for k, t in batch
            ],
        )


def return_reserved(session: Session, booking_ids: Collection[int]) -> int:
    """Give back every spot the bookings reserve (locking the hours in order first) and
    delete their reservations; returns how many reservation rows there were."""
    if not booking_ids:
        return 0
    ids = sorted(booking_ids)
    if _is_pg(session):
        session.execute(_PG_LOCK_RESERVED, {"b": ids}).all()
        session.execute(_PG_RETURN_SOLD, {"b": ids})
    else:
        totals = session.execute(
            select(Reservation.kiosk_id, Reservation.starts_at, func.sum(Reservation.spots))
            .where(Reservation.booking_id.in_(ids))
            .group_by(Reservation.kiosk_id, Reservation.starts_at)
        ).all()
        conn = session.connection()
        give_back = (
            update(_LOOP_HOURS)
            .where(
                _LOOP_HOURS.c.kiosk_id == bindparam("k"),
                _LOOP_HOURS.c.starts_at == bindparam("t"),
            )
            .values(sold=_LOOP_HOURS.c.sold - bindparam("n"))
        )
        for batch in _batches(totals):
            conn.execute(give_back, [{"k": k, "t": t, "n": int(n)} for k, t, n in batch])
    result = session.execute(
        delete(Reservation)
        .where(any_of(session, Reservation.booking_id, ids))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def set_capacity_from(
    session: Session, kiosk_id: str, capacity: int, since: datetime
) -> list[datetime]:
    """Give the kiosk's loop hours from `since` on a new capacity. Hours that already sold
    more than that are left alone and returned (the caller refuses the change)."""
    over = list(
        session.scalars(
            select(LoopHour.starts_at)
            .where(
                LoopHour.kiosk_id == kiosk_id,
                LoopHour.starts_at >= since,
                LoopHour.sold > capacity,
            )
            .order_by(LoopHour.starts_at)
        )
    )
    if not over:
        session.execute(
            update(LoopHour)
            .where(LoopHour.kiosk_id == kiosk_id, LoopHour.starts_at >= since)
            .values(capacity=capacity)
            .execution_options(synchronize_session=False)
        )
    return over


# --- availability ------------------------------------------------------------------------------


def _epoch(session: Session, column: Any) -> Any:
    """`column` as whole seconds since 1970 (UTC): availability reads hundreds of thousands
    of hours, and integers cross the driver far cheaper than timestamps."""
    if _is_pg(session):
        return cast(func.extract("epoch", column), BigInteger)
    return cast(func.strftime("%s", column), Integer)  # stored as UTC text


def loop_hour_rows(
    session: Session, kiosk_ids: Collection[str], lo: datetime, hi: datetime
) -> Iterator[Row[str, int, int, int]]:
    """(kiosk id, epoch seconds of starts_at, capacity, sold) of the kiosks' loop hours in
    [lo, hi]."""
    cols = (
        LoopHour.kiosk_id,
        _epoch(session, LoopHour.starts_at),
        LoopHour.capacity,
        LoopHour.sold,
    )
    for clause in any_of_slices(session, LoopHour.kiosk_id, kiosk_ids):
        yield from session.execute(select(*cols).where(clause, LoopHour.starts_at.between(lo, hi)))


def reservation_rows(
    session: Session,
    kiosk_ids: Collection[str],
    lo: datetime,
    hi: datetime,
    *,
    advertiser_id: int | None,
) -> Iterator[Row[str, int, int, int]]:
    """(kiosk id, epoch seconds of starts_at, booking id, spots) in [lo, hi]: every
    booking's, or only the bookings of `advertiser_id`."""
    cols = (
        Reservation.kiosk_id,
        _epoch(session, Reservation.starts_at),
        Reservation.booking_id,
        Reservation.spots,
    )
    for clause in any_of_slices(session, Reservation.kiosk_id, kiosk_ids):
        stmt = select(*cols).where(clause, Reservation.starts_at.between(lo, hi))
        if advertiser_id is not None:
            stmt = stmt.join(Booking, Booking.id == Reservation.booking_id).where(
                Booking.advertiser_id == advertiser_id
            )
        yield from session.execute(stmt)


def reserved_hours(session: Session, booking_id: int) -> list[tuple[str, datetime, int]]:
    rows = session.execute(
        select(Reservation.kiosk_id, Reservation.starts_at, Reservation.spots)
        .where(Reservation.booking_id == booking_id)
        .order_by(Reservation.kiosk_id, Reservation.starts_at)
    )
    return [(k, t, int(s)) for k, t, s in rows]


def reservations_total(session: Session, booking_id: int) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Reservation.spots), 0)).where(
                Reservation.booking_id == booking_id
            )
        )
        or 0
    )
