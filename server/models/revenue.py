"""Partners' revenue-share statements (SPEC §5).

One statement per partner and period (UNIQUE (partner_id, period_start): several scheduler
processes may run the job at once and still state each period once). The numbers are a
snapshot of the ledger (`server/revenue/`): recomputing a statement from the ledger gives the
same lines and totals. Lines are per kiosk; the share is rounded once, on the total.
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
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base, enum_values
from server.models.partner import SettlementCycle


class StatementStatus(enum.StrEnum):
    #: A share to pay: accrued in the ledger, waiting for the operators' payout.
    ISSUED = "issued"
    #: Nothing to pay (no revenue, a zero rate, or credits larger than revenue).
    NOTHING_DUE = "nothing_due"
    #: Paid out through WeChat Pay profit sharing.
    PAID = "paid"


class PartnerStatement(Base):
    __tablename__ = "partner_statements"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    cycle: Mapped[SettlementCycle] = mapped_column(
        Enum(SettlementCycle, native_enum=False, length=16, values_callable=enum_values)
    )
    #: Stated days, inclusive, in `timezone`.
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    timezone: Mapped[str] = mapped_column(String(64))
    #: The partner's rate when the statement was issued, in basis points.
    rate_bp: Mapped[int] = mapped_column(Integer)
    ad_revenue_fen: Mapped[int] = mapped_column(BigInteger)
    forfeited_fen: Mapped[int] = mapped_column(BigInteger)
    credits_fen: Mapped[int] = mapped_column(BigInteger)
    #: A negative base of the previous statement, carried into this one (<= 0).
    carried_in_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    #: ad_revenue + forfeited - credits + carried_in.
    base_fen: Mapped[int] = mapped_column(BigInteger)
    #: round_half_up(max(base, 0) * rate_bp / 10000): what the partner is paid.
    share_fen: Mapped[int] = mapped_column(BigInteger)
    #: min(base, 0): carried into the next statement.
    carried_out_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[StatementStatus] = mapped_column(
        Enum(StatementStatus, native_enum=False, length=16, values_callable=enum_values), index=True
    )
    #: The profit-sharing order (商户分账单号), derived from the id: a retry is the same order.
    out_order_no: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: WeChat's profit-sharing order id (微信分账单号) and the transaction it split.
    payout_order_id: Mapped[str | None] = mapped_column(String(64))
    payout_transaction_id: Mapped[str | None] = mapped_column(String(32))
    paid_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("partner_id", "period_start", name="uq_partner_statements_period"),
        CheckConstraint("period_start <= period_end", name="period_ordered"),
        CheckConstraint("share_fen >= 0", name="share_not_negative"),
        CheckConstraint("carried_in_fen <= 0", name="carried_in_not_positive"),
        CheckConstraint("carried_out_fen <= 0", name="carried_out_not_positive"),
        CheckConstraint(
            "base_fen = ad_revenue_fen + forfeited_fen - credits_fen + carried_in_fen",
            name="base_adds_up",
        ),
        CheckConstraint(
            "(status = 'paid' AND paid_at IS NOT NULL AND payout_order_id IS NOT NULL)"
            " OR (status <> 'paid' AND paid_at IS NULL)",
            name="paid_has_order",
        ),
    )


class PartnerStatementLine(Base):
    """One kiosk's part of a statement: its ad revenue, forfeited deposits (net of
    reversals) and ad credits in the period."""

    __tablename__ = "partner_statement_lines"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("partner_statements.id"), index=True)
    kiosk_id: Mapped[str] = mapped_column(String(32))
    ad_revenue_fen: Mapped[int] = mapped_column(BigInteger)
    forfeited_fen: Mapped[int] = mapped_column(BigInteger)
    credits_fen: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("statement_id", "kiosk_id", name="uq_partner_statement_lines_kiosk"),
    )
