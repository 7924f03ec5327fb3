from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base


class CommandRecord(Base):
    """Every downlink command sent, and how it ended (audit; the live wait uses shared state)."""

    __tablename__ = "commands"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), index=True)
    op: Mapped[str] = mapped_column(String(16))
    slot_no: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="sent")
    result_at: Mapped[datetime | None]
