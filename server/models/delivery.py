"""Proof of play, make-goods, credits and advertiser invoices (SPEC §4 delivery, billing).

`plays` is the evidence: one row per play id a kiosk reported (firmware_protocol SPEC §4.5),
whatever it played. `delivery_days` is the tally the reports and the settlement read: one
row per booking, kiosk and local day, incremented in the same transaction that stores new
plays, so a month of delivery is a few thousand rows to sum instead of millions of plays.
Settlement freezes a day (`settled_at`, `booked`, `lost`) and turns `lost` into a
`MakeGood` or an `AdCredit`, as the advertiser's contract says.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base


class PlayRecord(Base):
    """One reported play. `booking_id` is set only when the spot code names a booking that
    has this kiosk (server/playlists/rules.py spot codes); anything else (house content, an
    unknown or foreign code) is kept as evidence but billed to nobody."""

    __tablename__ = "plays"

    #: The kiosk's 16-byte play id, lowercase hex: the same play sent twice is one row.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"))
    #: The spot code the kiosk echoed (`cr`, at most 64 characters on the wire).
    code: Mapped[str] = mapped_column(String(64))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"))
    #: As named by the spot code; no foreign key, the kiosk's word is not trusted for it.
    creative_id: Mapped[int | None] = mapped_column(BigInteger)
    make_good: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Server time the spot started: the kiosk's `at` corrected by its known clock skew.
    started_at: Mapped[datetime]
    #: The kiosk's local date of `started_at` (Kiosk.timezone): the day it counts for.
    local_date: Mapped[date] = mapped_column(Date)
    duration_ms: Mapped[int] = mapped_column(Integer)
    playlist_version: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_plays_booking_kiosk_date", "booking_id", "kiosk_id", "local_date"),
        Index("ix_plays_kiosk_started", "kiosk_id", "started_at"),
    )


class DeliveryDay(Base):
    """Plays of one booking on one kiosk on one local day, and the day's settlement.

    `played` counts booked-spot plays, `make_good_played` make-good plays shown that day
    (for losses of earlier days). `booked`, `lost` and `settled_at` are NULL until the day
    is settled; plays arriving after that still count in `played` and show as extra."""

    __tablename__ = "delivery_days"

    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), primary_key=True)
    local_date: Mapped[date] = mapped_column(Date, primary_key=True)
    played: Mapped[int] = mapped_column(Integer, default=0)
    make_good_played: Mapped[int] = mapped_column(Integer, default=0)
    booked: Mapped[int | None] = mapped_column(Integer)
    lost: Mapped[int | None] = mapped_column(Integer)
    settled_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_delivery_days_kiosk_date", "kiosk_id", "local_date"),
        CheckConstraint("lost IS NULL OR lost >= 0", name="lost_not_negative"),
    )


class MakeGood(Base):
    """Spots owed to a booking on a kiosk for a day's losses (contract: make_good). The
    playlist compiler schedules them until the kiosk's make-good plays cover them."""

    __tablename__ = "make_goods"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"))
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), index=True)
    #: The local day the spots were lost.
    local_date: Mapped[date] = mapped_column(Date)
    spots_owed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("booking_id", "kiosk_id", "local_date", name="uq_make_goods_day"),
        CheckConstraint("spots_owed > 0", name="spots_owed_positive"),
    )


class AdCredit(Base):
    """Money owed back for a day's lost spots (contract: credit). Billing applies it to an
    invoice by setting `invoice_id`."""

    __tablename__ = "ad_credits"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    advertiser_id: Mapped[int] = mapped_column(ForeignKey("advertisers.id"), index=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"))
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"))
    local_date: Mapped[date] = mapped_column(Date)
    spots: Mapped[int] = mapped_column(Integer)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)

    __table_args__ = (
        UniqueConstraint("booking_id", "kiosk_id", "local_date", name="uq_ad_credits_day"),
        CheckConstraint("spots > 0", name="spots_positive"),
        CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
    )
