"""The notification outbox (SPEC §2: riders are told before the deadline and of every money
movement). A row is written in the same transaction as what it tells; a sender drains the
outbox through WeChat's subscribe messages, so nothing is told that did not happen and
nothing that happened goes untold."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    #: WeChat refused it for good (the rider never subscribed, or revoked): not retried.
    UNDELIVERABLE = "undeliverable"


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    rider_id: Mapped[int] = mapped_column(ForeignKey("riders.id"), index=True)
    #: e.g. "rental_started", "deadline_day5", "deposit_forfeited" (notifications/rules.py).
    kind: Mapped[str] = mapped_column(String(32))
    #: One notification per event: "deadline_day5:rental:42", "deposit_received:<txn>".
    dedup_key: Mapped[str] = mapped_column(String(160), unique=True)
    #: JSON object with what the message says (amounts in fen, times in UTC ISO 8601).
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[NotificationStatus] = mapped_column(
        Enum(
            NotificationStatus,
            native_enum=False,
            length=16,
            values_callable=lambda members: [m.value for m in members],
        )
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "ix_notifications_pending",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )
