"""Receipts of every applied uplink (the authoritative duplicate filter) and rejected ones."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base


class UplinkReceipt(Base):
    """(kiosk, seq) applied once. The primary key makes a duplicate a no-op even when two
    bridge processes race on the same redelivered message (firmware_protocol SPEC §5)."""

    __tablename__ = "uplink_receipts"

    kiosk_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    msg_type: Mapped[int] = mapped_column(Integer)
    kiosk_time: Mapped[datetime]
    received_at: Mapped[datetime]


class RejectedUplink(Base):
    """A payload dropped by the bridge, with the reason, for operators to look at."""

    __tablename__ = "rejected_uplinks"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str] = mapped_column(String(255))
    payload_head: Mapped[bytes] = mapped_column(LargeBinary)  # first 256 bytes
    received_at: Mapped[datetime]
