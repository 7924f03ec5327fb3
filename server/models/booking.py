"""Screen-time bookings and the loop inventory they reserve (SPEC §4 Booking).

Inventory is kept per kiosk and **local hour**: a `LoopHour` row is one hour of one kiosk's
loop, keyed by the UTC instant that local hour starts (so half-hour time zones and DST
need no special case: a repeated local hour is two rows, a skipped one none). `sold` counts
the spots per loop held or confirmed in that hour, and the CHECK `sold <= capacity` is
what makes overselling impossible: the database refuses it, whatever the Python did.
`Reservation` says which booking holds how many of them.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base, enum_values


class BookingStatus(enum.StrEnum):
    """`draft`: quoted, reserves nothing. `held`: reserves its spots until `held_until`.
    `confirmed`: reserves them for good. `released` (by the advertiser) and `expired` (hold
    ran out) reserve nothing any more."""

    DRAFT = "draft"
    HELD = "held"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"


class Booking(Base):
    __tablename__ = "bookings"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    advertiser_id: Mapped[int] = mapped_column(ForeignKey("advertisers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[BookingStatus] = mapped_column(
        Enum(BookingStatus, native_enum=False, length=16, values_callable=enum_values), index=True
    )
    spots_per_loop: Mapped[int] = mapped_column(SmallInteger)
    #: First and last day, inclusive, in each kiosk's local time.
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    #: Local-time dayparts as "HH-HH" hour ranges, comma separated; the end is exclusive
    #: and may be smaller than the start (crosses midnight): "07-10,22-02". "00-24" = all day.
    dayparts: Mapped[str] = mapped_column(String(200))
    #: How the kiosks were picked, as the request said it (JSON), for people reading it later.
    selection: Mapped[str] = mapped_column(Text)
    #: Quoted price: sum of the booking's kiosks' prices (booking_kiosks.price_fen).
    price_fen: Mapped[int] = mapped_column(BigInteger)
    held_until: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    #: Bumped on every change that can change a playlist (status, creatives).
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class BookingKiosk(Base):
    """One kiosk of a booking and its share of the price (spots x days x venue price)."""

    __tablename__ = "booking_kiosks"

    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), primary_key=True, index=True)
    days: Mapped[int] = mapped_column(Integer)
    price_fen: Mapped[int] = mapped_column(BigInteger)


class BookingCreative(Base):
    """The creatives a booking rotates through its spots (approved ones only get played)."""

    __tablename__ = "booking_creatives"

    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    creative_id: Mapped[int] = mapped_column(
        ForeignKey("creatives.id"), primary_key=True, index=True
    )


class LoopHour(Base):
    """One local hour of one kiosk's loop. See the module docstring."""

    __tablename__ = "loop_hours"

    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(primary_key=True)
    capacity: Mapped[int] = mapped_column(SmallInteger)
    sold: Mapped[int] = mapped_column(SmallInteger, default=0)

    __table_args__ = (
        CheckConstraint("sold >= 0", name="sold_not_negative"),
        CheckConstraint("sold <= capacity", name="not_oversold"),
    )


class Reservation(Base):
    """`spots` of one loop hour held by one booking."""

    __tablename__ = "reservations"

    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(primary_key=True)
    spots: Mapped[int] = mapped_column(SmallInteger)

    __table_args__ = (
        CheckConstraint("spots > 0", name="spots_positive"),
        Index("ix_reservations_kiosk_hour", "kiosk_id", "starts_at"),
    )


class VenuePrice(Base):
    """SPEC §4 Price: per spot per kiosk per day, set by venue type (OpenOOH id)."""

    __tablename__ = "venue_prices"

    venue_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    fen_per_spot_day: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]

    __table_args__ = (CheckConstraint("fen_per_spot_day > 0", name="price_positive"),)
