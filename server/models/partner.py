from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, Enum, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base


class SettlementCycle(enum.StrEnum):
    """How often a partner gets a revenue-share statement: calendar weeks (Monday to
    Sunday) or calendar months, in the statement time zone (SPEC §5)."""

    WEEKLY = "weekly"
    MONTHLY = "monthly"


class Partner(Base):
    """A city partner: operates one region's kiosks under a revenue share (SPEC §5)."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    region: Mapped[str] = mapped_column(String(120), index=True)
    #: The partner's share of its kiosks' revenue, in basis points (3000 = 30 %).
    revenue_share_bp: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    settlement_cycle: Mapped[SettlementCycle] = mapped_column(
        Enum(
            SettlementCycle,
            native_enum=False,
            length=16,
            values_callable=lambda members: [m.value for m in members],
        ),
        default=SettlementCycle.MONTHLY,
        server_default=SettlementCycle.MONTHLY.value,
    )
    #: The partner's WeChat Pay merchant id, the receiver (MERCHANT_ID) of its profit-sharing
    #: payouts; None until an operator sets it (statements then wait unpaid).
    payout_mchid: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(
            "revenue_share_bp >= 0 AND revenue_share_bp <= 10000", name="revenue_share_in_range"
        ),
    )
