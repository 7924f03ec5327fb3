"""Deposit payments through WeChat Pay (SPEC §2 Deposit, §3)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base

_ID = BigInteger().with_variant(Integer, "sqlite")


class DepositStatus(enum.StrEnum):
    """`pending` until WeChat Pay confirms (verified notification or verified order query),
    then `held`. Refund and forfeiture come with their own work; the column is a plain string
    (`native_enum=False`), so new states need no database enum change."""

    PENDING = "pending"
    HELD = "held"
    REFUNDED = "refunded"
    FORFEITED = "forfeited"


class DepositPayment(Base):
    """One JSAPI order for the deposit. `out_trade_no` is ours, `transaction_id` WeChat's;
    both UNIQUE, so one WeChat payment can settle one row only."""

    __tablename__ = "deposit_payments"

    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    rider_id: Mapped[int] = mapped_column(ForeignKey("riders.id"), index=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    #: The client's Idempotency-Key: a double tap finds the payment of the first tap.
    idempotency_key: Mapped[str] = mapped_column(String(128))
    #: Set once JSAPI prepay answered (valid two hours at WeChat).
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[DepositStatus] = mapped_column(
        Enum(DepositStatus, native_enum=False, length=16), index=True
    )
    transaction_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    paid_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("rider_id", "idempotency_key"),)
