"""Deposit payments through WeChat Pay (SPEC §2 Deposit, §3)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base


class DepositStatus(enum.StrEnum):
    """`pending` until WeChat Pay confirms (verified notification or verified order query),
    then `held`; `refunding` -> `refunded` after a withdrawal; `forfeited` at the 7-day
    deadline (back to `held` if a return seen before the deadline undoes it); `closed` when
    it expired unpaid (`deposits.rules.PAYMENT_WINDOW`). The column is
    a plain string (`native_enum=False`), so new states need no database enum change."""

    PENDING = "pending"
    HELD = "held"
    #: The rider withdrew it; the refund is on its way through WeChat Pay.
    REFUNDING = "refunding"
    REFUNDED = "refunded"
    FORFEITED = "forfeited"
    #: Never paid: the order expired unpaid and was closed at WeChat Pay (关闭订单), so it
    #: can no longer be paid and is no longer asked about.
    CLOSED = "closed"


class DepositPayment(Base):
    """One JSAPI order for the deposit. `out_trade_no` is ours, `transaction_id` WeChat's;
    both UNIQUE, so one WeChat payment can settle one row only."""

    __tablename__ = "deposit_payments"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
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


class RefundStatus(enum.StrEnum):
    """`pending` until WeChat Pay accepted the refund request, `processing` while WeChat
    pays it out, `succeeded` once a verified refund notification or query says SUCCESS.
    A request that failed is retried (same out_refund_no) until it succeeds: it stays
    `pending` with `next_attempt_at` set. `abnormal` (WeChat: ABNORMAL, the rider's account
    is closed) needs an operator."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    ABNORMAL = "abnormal"


class DepositRefund(Base):
    """The refund of a withdrawn deposit (SPEC §2: refunded through WeChat Pay, never by
    hand). `out_refund_no` is ours and stays the same across retries, so WeChat refunds once."""

    __tablename__ = "deposit_refunds"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("deposit_payments.id"), unique=True)
    rider_id: Mapped[int] = mapped_column(ForeignKey("riders.id"), index=True)
    out_refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[RefundStatus] = mapped_column(
        Enum(RefundStatus, native_enum=False, length=16), index=True
    )
    #: WeChat's refund id, once it accepted the request.
    refund_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    succeeded_at: Mapped[datetime | None]
