"""Rentals and the umbrellas they move (SPEC §2 Rent, Free window, Return anywhere,
Automatic forfeiture). The state machine itself is `server/rentals/rules.py`."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base, enum_values


class RentalStatus(enum.StrEnum):
    """`ejecting` while the unlock is out; `active` only once the kiosk reported the umbrella
    left the slot; then `returned`, `forfeited` (7 days passed; may still be undone by a
    return the kiosk saw before the deadline), or `ended` by an operator. `failed` rentals
    never started: nothing was charged."""

    EJECTING = "ejecting"
    ACTIVE = "active"
    RETURNED = "returned"
    FORFEITED = "forfeited"
    ENDED = "ended"
    FAILED = "failed"


#: States that hold the rider's deposit and a slot or umbrella: at most one per rider.
OPEN_STATUSES = (RentalStatus.EJECTING, RentalStatus.ACTIVE)


class UmbrellaState(enum.StrEnum):
    IN_SLOT = "in_slot"
    ON_RENT = "on_rent"
    FORFEITED = "forfeited"
    LOST = "lost"


class Umbrella(Base):
    """One umbrella, known by its RFID tag. Registered the first time a kiosk reports it in a
    slot (stocking a kiosk is putting umbrellas in it); see docs/ARCHITECTURE.md."""

    __tablename__ = "umbrellas"

    tag: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[UmbrellaState] = mapped_column(
        Enum(UmbrellaState, native_enum=False, length=16, values_callable=enum_values)
    )
    kiosk_id: Mapped[str | None] = mapped_column(ForeignKey("kiosks.id"), index=True)
    slot_no: Mapped[int | None] = mapped_column(Integer)
    first_seen_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Rental(Base):
    __tablename__ = "rentals"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    rider_id: Mapped[int] = mapped_column(ForeignKey("riders.id"), index=True)
    #: The client's Idempotency-Key: a double tap or a retried request finds this rental.
    idempotency_key: Mapped[str] = mapped_column(String(128))
    deposit_payment_id: Mapped[int] = mapped_column(ForeignKey("deposit_payments.id"), index=True)
    deposit_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[RentalStatus] = mapped_column(
        Enum(RentalStatus, native_enum=False, length=16, values_callable=enum_values)
    )
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), index=True)
    #: The slot being (or last) unlocked; a jam moves the rental to another slot.
    slot_no: Mapped[int] = mapped_column(Integer)
    #: The unlock command in flight (or the one that released the umbrella).
    cmd_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    umbrella_tag: Mapped[str | None] = mapped_column(String(32), index=True)
    #: Why a rental failed or was ended by an operator, in words the rider can read.
    reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    #: The kiosk's timestamp of the umbrella leaving the slot: the free window starts here.
    started_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    #: The kiosk's timestamp of the return (the one that saw it), and where.
    returned_at: Mapped[datetime | None]
    return_kiosk_id: Mapped[str | None] = mapped_column(ForeignKey("kiosks.id"))
    return_slot_no: Mapped[int | None] = mapped_column(Integer)
    forfeited_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    #: Deadline reminders sent so far (SPEC §2: day 5 and day 6): 0, 1 or 2.
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("rider_id", "idempotency_key"),
        # A held deposit covers one umbrella at a time (SPEC §2): one open rental per rider.
        Index(
            "uq_rentals_one_open_per_rider",
            "rider_id",
            unique=True,
            sqlite_where=text("status IN ('ejecting', 'active')"),
            postgresql_where=text("status IN ('ejecting', 'active')"),
        ),
        # Two riders can never be sent to the same slot at once.
        Index(
            "uq_rentals_one_eject_per_slot",
            "kiosk_id",
            "slot_no",
            unique=True,
            sqlite_where=text("status = 'ejecting'"),
            postgresql_where=text("status = 'ejecting'"),
        ),
        # The forfeiture sweep and the reminder job read active rentals by deadline.
        Index(
            "ix_rentals_active_deadline",
            "deadline_at",
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )


class AuditLog(Base):
    """What an operator did, to what, and why (SPEC §2 operations: force-ending a rental)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    detail: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime]
