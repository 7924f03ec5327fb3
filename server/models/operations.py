"""Field operations of a city partner (issue 5): alerts on kiosks and rebalancing tasks."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base, enum_values


class AlertKind(enum.StrEnum):
    OFFLINE = "offline"
    NEARLY_EMPTY = "nearly_empty"
    NEARLY_FULL = "nearly_full"
    SLOT_FAULTY = "slot_faulty"


class Alert(Base):
    """A condition on a kiosk, open from when the alerts job first saw it until it cleared.

    `slot_no` is 0 for whole-kiosk alerts, not NULL: NULLs never collide in a unique index,
    and the partial unique index is what keeps several schedulers from opening one twice."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"))
    kind: Mapped[AlertKind] = mapped_column(
        Enum(AlertKind, native_enum=False, length=16, values_callable=enum_values)
    )
    slot_no: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(String(255))
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]
    acked_by: Mapped[str | None] = mapped_column(String(120))

    __table_args__ = (
        Index(
            "uq_alerts_one_open",
            "kiosk_id",
            "kind",
            "slot_no",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
        Index("ix_alerts_partner_closed", "partner_id", "closed_at"),
        CheckConstraint("slot_no >= 0", name="slot_no_not_negative"),
    )


class TaskStatus(enum.StrEnum):
    OPEN = "open"
    DONE = "done"


class RebalancingTask(Base):
    """ "Move `quantity` umbrellas from one kiosk to another" for a partner's field staff.
    Both kiosks belong to `partner_id` (checked by the service when the task is created)."""

    __tablename__ = "rebalancing_tasks"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    from_kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"))
    to_kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[TaskStatus] = mapped_column(
        Enum(TaskStatus, native_enum=False, length=16, values_callable=enum_values)
    )
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(120))
    done_at: Mapped[datetime | None]
    done_by: Mapped[str | None] = mapped_column(String(120))

    __table_args__ = (
        Index("ix_rebalancing_tasks_partner_status", "partner_id", "status"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("from_kiosk_id <> to_kiosk_id", name="two_kiosks"),
    )
