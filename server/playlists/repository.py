"""Every playlist query. Set-wise: a chunk of kiosks costs the same few statements whatever
its size (bench/playlist_compile.py measures 10,000 kiosks)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Row, func, select, type_coerce, update
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
    PlaylistVersion,
    Reservation,
)
from server.models.delivery import MakeGood
from server.playlists import rules


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest version of one kiosk's playlist."""

    kiosk_id: str
    version: int
    ends_at: datetime
    compiled_at: datetime
    content_hash: str
    cmd_id: str
    published_at: datetime | None
    acked_at: datetime | None


def _latest_query(clause: ColumnElement[bool] | None = None) -> Any:
    """The newest version row of each kiosk (of the kiosks `clause` picks). The filter goes
    inside the grouping too, so a chunk reads its own kiosks' index entries only."""
    newest = select(
        PlaylistVersion.kiosk_id, func.max(PlaylistVersion.version).label("version")
    ).group_by(PlaylistVersion.kiosk_id)
    if clause is not None:
        newest = newest.where(clause)
    sub = newest.subquery()
    return select(
        PlaylistVersion.kiosk_id,
        PlaylistVersion.version,
        PlaylistVersion.ends_at,
        PlaylistVersion.compiled_at,
        PlaylistVersion.content_hash,
        PlaylistVersion.cmd_id,
        PlaylistVersion.published_at,
        PlaylistVersion.acked_at,
    ).join(
        sub,
        (sub.c.kiosk_id == PlaylistVersion.kiosk_id) & (sub.c.version == PlaylistVersion.version),
    )


def latest_versions(
    session: Session, kiosk_ids: Collection[str] | None = None
) -> dict[str, Latest]:
    if kiosk_ids is None:
        rows = session.execute(_latest_query()).all()
    else:
        rows = []
        for clause in any_of_slices(session, PlaylistVersion.kiosk_id, kiosk_ids):
            rows += session.execute(_latest_query(clause)).all()
    return {r.kiosk_id: Latest(*r) for r in rows}


def all_kiosk_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Kiosk.id).order_by(Kiosk.id)))


def existing_kiosk_ids(session: Session, kiosk_ids: Collection[str]) -> set[str]:
    out: set[str] = set()
    for clause in any_of_slices(session, Kiosk.id, kiosk_ids):
        out.update(session.scalars(select(Kiosk.id).where(clause)))
    return out


def booking_changes_since(session: Session, since: datetime) -> dict[str, datetime]:
    """kiosk id -> the newest `updated_at` of its bookings changed after `since`."""
    rows = session.execute(
        select(BookingKiosk.kiosk_id, func.max(Booking.updated_at))
        .join(Booking, Booking.id == BookingKiosk.booking_id)
        .where(Booking.updated_at > since)
        .group_by(BookingKiosk.kiosk_id)
    ).all()
    return {k: t for k, t in rows}


def make_goods_since(session: Session, since: datetime) -> dict[str, datetime]:
    """kiosk id -> the newest make-good owed there since `since` (the delivery settlement
    creates them; the compiler must place them in unsold spots)."""
    rows = session.execute(
        select(MakeGood.kiosk_id, func.max(MakeGood.created_at))
        .where(MakeGood.created_at > since)
        .group_by(MakeGood.kiosk_id)
    ).all()
    return {k: t for k, t in rows}


def load_kiosks(session: Session, kiosk_ids: Collection[str]) -> list[rules.KioskLoop]:
    out: list[rules.KioskLoop] = []
    for clause in any_of_slices(session, Kiosk.id, kiosk_ids):
        rows = session.execute(
            select(
                Kiosk.id,
                Kiosk.timezone,
                Kiosk.loop_seconds,
                Kiosk.spot_seconds,
                Kiosk.open_hour,
                Kiosk.close_hour,
            ).where(clause)
        ).all()
        out += [rules.KioskLoop(*r) for r in rows]
    return sorted(out, key=lambda k: k.kiosk_id)


#: (kiosk_id, starts_at, booking_id, spots, advertiser_id, dayparts)
ReservedRow = Row[str, datetime, int, int, int, str]


def confirmed_reservations(
    session: Session, kiosk_ids: Collection[str], start: datetime, end: datetime
) -> list[ReservedRow]:
    """Reservations of confirmed bookings in [start, end); held spots are not sold yet and
    play house content. Plain rows (Core, no ORM objects): there are many."""
    out: list[ReservedRow] = []
    conn = session.connection()
    # psycopg already hands back aware datetimes; skipping UTCDateTime's per-row conversion
    # saves a fifth of a compile (an aware datetime equals and hashes as its UTC instant).
    # SQLite stores naive text, which the model's type has to mark as UTC.
    starts: Any = Reservation.starts_at
    if conn.dialect.name == "postgresql":
        starts = type_coerce(Reservation.starts_at, DateTime(timezone=True)).label("starts_at")
    for clause in any_of_slices(session, Reservation.kiosk_id, kiosk_ids):
        rows = conn.execute(
            select(
                Reservation.kiosk_id,
                starts,
                Reservation.booking_id,
                Reservation.spots,
                Booking.advertiser_id,
                Booking.dayparts,
            )
            .join(Booking, Booking.id == Reservation.booking_id)
            .where(
                clause,
                Reservation.starts_at >= start,
                Reservation.starts_at < end,
                Booking.status == BookingStatus.CONFIRMED,
            )
        ).all()
        out += rows
    return out


def approved_media(
    session: Session, booking_ids: Collection[int]
) -> dict[int, list[tuple[int, rules.Media]]]:
    """booking id -> its approved creatives (of the booking's own advertiser) by id."""
    out: dict[int, list[tuple[int, rules.Media]]] = {}
    for clause in any_of_slices(session, BookingCreative.booking_id, booking_ids):
        rows = session.execute(
            select(BookingCreative.booking_id, Creative.id, Creative.media_url, Creative.sha256)
            .join(Creative, Creative.id == BookingCreative.creative_id)
            .join(Booking, Booking.id == BookingCreative.booking_id)
            .where(
                clause,
                Creative.status == CreativeStatus.APPROVED,
                Creative.advertiser_id == Booking.advertiser_id,
            )
            .order_by(BookingCreative.booking_id, Creative.id)
        ).all()
        for booking_id, creative_id, url, sha in rows:
            out.setdefault(booking_id, []).append((creative_id, rules.Media(url, sha.lower())))
    return out


def insert_versions(session: Session, rows: Sequence[dict[str, Any]]) -> set[tuple[str, int]]:
    """Insert new versions; a (kiosk, version) another scheduler inserted first is skipped.
    Returns the keys this call inserted."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(PlaylistVersion)
        .on_conflict_do_nothing(index_elements=["kiosk_id", "version"])
        .returning(PlaylistVersion.kiosk_id, PlaylistVersion.version)
    )
    done: set[tuple[str, int]] = set()
    for i in range(0, len(rows), 1000):
        result = session.execute(stmt, list(rows[i : i + 1000]))
        done.update((k, v) for k, v in result.all())
    return done


def touch_compiled(session: Session, keys: Iterable[tuple[str, int]], now: datetime) -> None:
    """An unchanged compile confirms the latest version: its `compiled_at` moves to `now`."""
    params = [{"kiosk_id": k, "version": v, "compiled_at": now} for k, v in keys]
    if params:
        session.execute(update(PlaylistVersion), params)


def bodies(session: Session, keys: Collection[tuple[str, int]]) -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    by_kiosk: dict[str, set[int]] = {}
    for k, v in keys:
        by_kiosk.setdefault(k, set()).add(v)
    for clause in any_of_slices(session, PlaylistVersion.kiosk_id, by_kiosk):
        rows = session.execute(
            select(PlaylistVersion.kiosk_id, PlaylistVersion.version, PlaylistVersion.body).where(
                clause
            )
        ).all()
        for k, v, body in rows:
            if v in by_kiosk[k]:
                out[(k, v)] = body
    return out


def mark_published(session: Session, cmd_ids: Collection[str], now: datetime) -> None:
    for clause in any_of_slices(session, PlaylistVersion.cmd_id, cmd_ids):
        session.execute(
            update(PlaylistVersion)
            .where(clause)
            .values(published_at=now)
            .execution_options(synchronize_session=False)
        )


def versions_by_cmd(session: Session, cmd_ids: Collection[str]) -> list[PlaylistVersion]:
    out: list[PlaylistVersion] = []
    for clause in any_of_slices(session, PlaylistVersion.cmd_id, cmd_ids):
        out += session.scalars(select(PlaylistVersion).where(clause))
    return out


def kiosk_exists(session: Session, kiosk_id: str) -> bool:
    return session.get(Kiosk, kiosk_id) is not None


def list_versions(session: Session, kiosk_id: str, limit: int) -> list[PlaylistVersion]:
    return list(
        session.scalars(
            select(PlaylistVersion)
            .where(PlaylistVersion.kiosk_id == kiosk_id)
            .order_by(PlaylistVersion.version.desc())
            .limit(limit)
        )
    )


def get_version(session: Session, kiosk_id: str, version: int) -> PlaylistVersion | None:
    return session.get(PlaylistVersion, (kiosk_id, version))


def latest_acked(session: Session, kiosk_id: str) -> PlaylistVersion | None:
    return session.scalars(
        select(PlaylistVersion)
        .where(PlaylistVersion.kiosk_id == kiosk_id, PlaylistVersion.ack_result == "ok")
        .order_by(PlaylistVersion.version.desc())
        .limit(1)
    ).first()


def latest_version(session: Session, kiosk_id: str) -> PlaylistVersion | None:
    return session.scalars(
        select(PlaylistVersion)
        .where(PlaylistVersion.kiosk_id == kiosk_id)
        .order_by(PlaylistVersion.version.desc())
        .limit(1)
    ).first()


def reported_version(session: Session, kiosk_id: str) -> int | None:
    return session.scalar(
        select(KioskState.playlist_version).where(KioskState.kiosk_id == kiosk_id)
    )


def booking_facts(session: Session, booking_id: int) -> tuple[Booking, Advertiser] | None:
    row = session.execute(
        select(Booking, Advertiser)
        .join(Advertiser, Advertiser.id == Booking.advertiser_id)
        .where(Booking.id == booking_id)
    ).first()
    return None if row is None else (row[0], row[1])


def creative(session: Session, creative_id: int) -> Creative | None:
    return session.get(Creative, creative_id)
