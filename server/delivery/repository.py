"""Every delivery query. Set-shaped: a bridge batch of plays, a settlement run or a report is
a handful of statements whatever its size."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import Row, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from server.core.db import any_of_slices
from server.models import (
    Advertiser,
    Booking,
    BookingCreative,
    BookingKiosk,
    BookingStatus,
    Creative,
    CreativeStatus,
    Kiosk,
    KioskState,
    LostSpotPolicy,
    Reservation,
)
from server.models.delivery import AdCredit, DeliveryDay, MakeGood, PlayRecord

DayKey = tuple[int, str, date]
"""(booking_id, kiosk_id, local_date)"""


def _insert(session: Session, table: Table) -> postgresql.Insert | sqlite.Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no conflict-aware insert for {dialect}")


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


# ---------------------------------------------------------------- plays


def kiosk_clocks(session: Session, kiosk_ids: Collection[str]) -> dict[str, tuple[str, int | None]]:
    """kiosk id -> (time zone, clock skew in ms or None) for the registered ones."""
    out: dict[str, tuple[str, int | None]] = {}
    for clause in any_of_slices(session, Kiosk.id, kiosk_ids):
        rows = session.execute(
            select(Kiosk.id, Kiosk.timezone, KioskState.clock_skew_ms)
            .outerjoin(KioskState, KioskState.kiosk_id == Kiosk.id)
            .where(clause)
        )
        out.update({k: (tz, skew) for k, tz, skew in rows})
    return out


def booking_kiosk_pairs(
    session: Session, booking_ids: Collection[int], kiosk_ids: Collection[str]
) -> set[tuple[int, str]]:
    """The (booking, kiosk) pairs among these that exist: a play counts only for a booking
    that bought that kiosk."""
    if not booking_ids or not kiosk_ids:
        return set()
    pairs: set[tuple[int, str]] = set()
    for clause in any_of_slices(session, BookingKiosk.booking_id, booking_ids):
        rows = session.execute(
            select(BookingKiosk.booking_id, BookingKiosk.kiosk_id).where(
                clause, BookingKiosk.kiosk_id.in_(sorted(kiosk_ids))
            )
        )
        pairs.update((b, k) for b, k in rows)
    return pairs


def insert_plays(session: Session, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert plays, ignoring play ids already stored; return the ids that were new. The
    primary key decides, so two bridges racing on a re-sent play store it once."""
    if not rows:
        return set()
    table = _table(PlayRecord)
    stmt = _insert(session, table).on_conflict_do_nothing(index_elements=["id"])
    result = session.execute(stmt.returning(table.c.id), list(rows))
    return {pid for (pid,) in result.all()}


def add_to_days(session: Session, increments: Mapping[DayKey, tuple[int, int]]) -> None:
    """Add (played, make_good_played) to each day's tally, creating the row if needed.

    Keys go in sorted order so two batches touching the same days lock them in the same
    order (PostgreSQL) instead of deadlocking."""
    if not increments:
        return
    table = _table(DeliveryDay)
    base = _insert(session, table)
    stmt = base.on_conflict_do_update(
        index_elements=["booking_id", "kiosk_id", "local_date"],
        set_={
            "played": table.c.played + base.excluded.played,
            "make_good_played": table.c.make_good_played + base.excluded.make_good_played,
        },
    )
    session.execute(
        stmt,
        [
            {
                "booking_id": b,
                "kiosk_id": k,
                "local_date": d,
                "played": played,
                "make_good_played": mg,
            }
            for (b, k, d), (played, mg) in sorted(increments.items())
        ],
    )


# ---------------------------------------------------------------- settlement


ReservationRow = Row[int, str, datetime, int, int, str, int]
"""(booking_id, kiosk_id, starts_at, spots, loop_seconds, timezone, advertiser_id)"""


def confirmed_reservations(
    session: Session,
    start: datetime,
    end: datetime,
    *,
    booking_ids: Collection[int] | None = None,
) -> Sequence[ReservationRow]:
    """Reserved loop hours of confirmed bookings starting in [start, end), with what is
    needed to turn them into booked spots per local day."""
    stmt = (
        select(
            Reservation.booking_id,
            Reservation.kiosk_id,
            Reservation.starts_at,
            Reservation.spots,
            Kiosk.loop_seconds,
            Kiosk.timezone,
            Booking.advertiser_id,
        )
        .join(Booking, Booking.id == Reservation.booking_id)
        .join(Kiosk, Kiosk.id == Reservation.kiosk_id)
        .where(
            Booking.status == BookingStatus.CONFIRMED,
            Reservation.starts_at >= start,
            Reservation.starts_at < end,
        )
    )
    if booking_ids is None:
        return session.execute(stmt).all()
    out: list[ReservationRow] = []
    for clause in any_of_slices(session, Reservation.booking_id, booking_ids):
        out.extend(session.execute(stmt.where(clause)).all())
    return out


def settled_keys(session: Session, first: date, last: date) -> set[DayKey]:
    """The days in [first, last] already settled (so a run does not touch them again)."""
    rows = session.execute(
        select(DeliveryDay.booking_id, DeliveryDay.kiosk_id, DeliveryDay.local_date).where(
            DeliveryDay.local_date >= first,
            DeliveryDay.local_date <= last,
            DeliveryDay.settled_at.is_not(None),
        )
    )
    return {(b, k, d) for b, k, d in rows}


def ensure_days(session: Session, keys: Collection[DayKey]) -> None:
    if not keys:
        return
    stmt = _insert(session, _table(DeliveryDay)).on_conflict_do_nothing()
    session.execute(
        stmt,
        [
            {"booking_id": b, "kiosk_id": k, "local_date": d, "played": 0, "make_good_played": 0}
            for b, k, d in sorted(keys)
        ],
    )


def lock_unsettled_days(
    session: Session, booking_ids: Collection[int], first: date, last: date
) -> list[DeliveryDay]:
    """Unsettled days of these bookings in [first, last], row-locked; rows another run (or
    a bridge batch) holds right now are skipped: the next run takes them."""
    out: list[DeliveryDay] = []
    for clause in any_of_slices(session, DeliveryDay.booking_id, booking_ids):
        out.extend(
            session.scalars(
                select(DeliveryDay)
                .where(
                    clause,
                    DeliveryDay.local_date >= first,
                    DeliveryDay.local_date <= last,
                    DeliveryDay.settled_at.is_(None),
                )
                .order_by(DeliveryDay.booking_id, DeliveryDay.kiosk_id, DeliveryDay.local_date)
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            ).all()
        )
    return out


def contracts(session: Session, booking_ids: Collection[int]) -> dict[int, LostSpotPolicy]:
    out: dict[int, LostSpotPolicy] = {}
    for clause in any_of_slices(session, Booking.id, booking_ids):
        rows = session.execute(
            select(Booking.id, Advertiser.lost_spot_policy)
            .join(Advertiser, Advertiser.id == Booking.advertiser_id)
            .where(clause)
        )
        out.update({b: p for b, p in rows})
    return out


def kiosk_prices(
    session: Session, booking_ids: Collection[int]
) -> dict[tuple[int, str], tuple[int, int]]:
    """(booking, kiosk) -> (price_fen, days)."""
    out: dict[tuple[int, str], tuple[int, int]] = {}
    for clause in any_of_slices(session, BookingKiosk.booking_id, booking_ids):
        rows = session.execute(
            select(
                BookingKiosk.booking_id,
                BookingKiosk.kiosk_id,
                BookingKiosk.price_fen,
                BookingKiosk.days,
            ).where(clause)
        )
        out.update({(b, k): (price, days) for b, k, price, days in rows})
    return out


def insert_make_goods(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        stmt = _insert(session, _table(MakeGood)).on_conflict_do_nothing()
        session.execute(stmt, list(rows))


def insert_credits(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        stmt = _insert(session, _table(AdCredit)).on_conflict_do_nothing()
        session.execute(stmt, list(rows))


# ---------------------------------------------------------------- reports


def booking(session: Session, booking_id: int) -> Booking | None:
    return session.get(Booking, booking_id)


def bookings_of(session: Session, advertiser_id: int) -> list[Booking]:
    return list(
        session.scalars(
            select(Booking).where(Booking.advertiser_id == advertiser_id).order_by(Booking.id)
        ).all()
    )


_Dated = TypeVar("_Dated", DeliveryDay, MakeGood, AdCredit)


def _booking_rows(
    session: Session,
    model: type[_Dated],
    booking_ids: Collection[int],
    first: date | None,
    last: date | None,
) -> list[_Dated]:
    """The rows of `model` (keyed by booking and local day) of these bookings, in a range."""
    out: list[_Dated] = []
    for clause in any_of_slices(session, model.booking_id, booking_ids):
        stmt = select(model).where(clause)
        if first is not None:
            stmt = stmt.where(model.local_date >= first)
        if last is not None:
            stmt = stmt.where(model.local_date <= last)
        out.extend(session.scalars(stmt).all())
    return out


def days_of(
    session: Session, booking_ids: Collection[int], first: date | None, last: date | None
) -> list[DeliveryDay]:
    return _booking_rows(session, DeliveryDay, booking_ids, first, last)


def make_goods_of(
    session: Session, booking_ids: Collection[int], first: date | None, last: date | None
) -> list[MakeGood]:
    return _booking_rows(session, MakeGood, booking_ids, first, last)


def credits_of(
    session: Session, booking_ids: Collection[int], first: date | None, last: date | None
) -> list[AdCredit]:
    return _booking_rows(session, AdCredit, booking_ids, first, last)


# ---------------------------------------------------------------- make-goods for playlists


def make_good_balances(
    session: Session, kiosk_ids: Collection[str]
) -> list[tuple[int, str, int, int]]:
    """(booking_id, kiosk_id, advertiser_id, spots owed minus make-good plays so far) for
    every (booking, kiosk) on these kiosks that is still owed something. One statement:
    owed and played are summed per pair in subqueries and joined."""
    out: list[tuple[int, str, int, int]] = []
    for clause, day_clause in zip(
        any_of_slices(session, MakeGood.kiosk_id, kiosk_ids),
        any_of_slices(session, DeliveryDay.kiosk_id, kiosk_ids),
        strict=True,
    ):
        owed = (
            select(
                MakeGood.booking_id,
                MakeGood.kiosk_id,
                func.sum(MakeGood.spots_owed).label("owed"),
            )
            .where(clause)
            .group_by(MakeGood.booking_id, MakeGood.kiosk_id)
            .subquery()
        )
        played = (
            select(
                DeliveryDay.booking_id,
                DeliveryDay.kiosk_id,
                func.sum(DeliveryDay.make_good_played).label("played"),
            )
            .where(day_clause, DeliveryDay.make_good_played > 0)
            .group_by(DeliveryDay.booking_id, DeliveryDay.kiosk_id)
            .subquery()
        )
        remaining = owed.c.owed - func.coalesce(played.c.played, 0)
        rows = session.execute(
            select(owed.c.booking_id, owed.c.kiosk_id, Booking.advertiser_id, remaining)
            .join(Booking, Booking.id == owed.c.booking_id)
            .outerjoin(
                played,
                (played.c.booking_id == owed.c.booking_id) & (played.c.kiosk_id == owed.c.kiosk_id),
            )
            .where(remaining > 0)
            .order_by(owed.c.kiosk_id, owed.c.booking_id)
        )
        out.extend((int(b), str(k), int(a), int(r)) for b, k, a, r in rows)
    return out


def approved_creatives(session: Session, booking_ids: Collection[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for clause in any_of_slices(session, BookingCreative.booking_id, booking_ids):
        rows = session.execute(
            select(BookingCreative.booking_id, BookingCreative.creative_id)
            .join(Creative, Creative.id == BookingCreative.creative_id)
            .where(clause, Creative.status == CreativeStatus.APPROVED)
            .order_by(BookingCreative.booking_id, BookingCreative.creative_id)
        )
        for b, c in rows:
            out.setdefault(b, []).append(c)
    return out
