"""Advertiser invoices: prepaid orders and monthly statements (SPEC §4 Billing).

A prepaid advertiser gets one `prepaid_order` invoice per confirmed booking, due on issue
(`booking_id` UNIQUE: confirming twice bills once). A monthly advertiser gets one
`monthly_statement` per calendar month, issued on the 1st and due on the 20th; the partial
UNIQUE index on (advertiser_id, kind, period_start) for statements is what lets several
scheduler processes run the statement job at once and still issue each statement once.

Lines are per booking AND kiosk, so partners' revenue-share statements can sum ad revenue per
kiosk. Credits for lost spots (`ad_credits`, models/delivery.py) point at the invoice they
were applied to; `credits_fen` is their sum, and `total_fen = subtotal_fen - credits_fen`
is never negative (a credit that does not fit waits for a later invoice).
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
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base, enum_values


class InvoiceKind(enum.StrEnum):
    PREPAID_ORDER = "prepaid_order"
    MONTHLY_STATEMENT = "monthly_statement"


class InvoiceStatus(enum.StrEnum):
    ISSUED = "issued"
    PAID = "paid"


class Invoice(Base):
    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    advertiser_id: Mapped[int] = mapped_column(ForeignKey("advertisers.id"), index=True)
    kind: Mapped[InvoiceKind] = mapped_column(
        Enum(InvoiceKind, native_enum=False, length=32, values_callable=enum_values)
    )
    #: The booking a prepaid order bills; None on statements.
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"), unique=True)
    #: Billed days, inclusive: the booking's dates for an order, the month for a statement.
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    #: Dates in the billing time zone (settings.billing_timezone).
    issued_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    subtotal_fen: Mapped[int] = mapped_column(BigInteger)
    credits_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    total_fen: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[InvoiceStatus] = mapped_column(
        Enum(InvoiceStatus, native_enum=False, length=16, values_callable=enum_values), index=True
    )
    paid_at: Mapped[datetime | None]
    payment_reference: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("subtotal_fen >= 0", name="subtotal_not_negative"),
        CheckConstraint("credits_fen >= 0", name="credits_not_negative"),
        CheckConstraint("total_fen >= 0", name="total_not_negative"),
        CheckConstraint("total_fen = subtotal_fen - credits_fen", name="total_adds_up"),
        CheckConstraint("period_start <= period_end", name="period_ordered"),
        CheckConstraint(
            "(kind = 'prepaid_order' AND booking_id IS NOT NULL)"
            " OR (kind = 'monthly_statement' AND booking_id IS NULL)",
            name="booking_iff_order",
        ),
        CheckConstraint(
            "(status = 'paid' AND paid_at IS NOT NULL AND payment_reference IS NOT NULL)"
            " OR (status = 'issued' AND paid_at IS NULL AND payment_reference IS NULL)",
            name="paid_has_reference",
        ),
        # A statement is issued once per advertiser and month (prepaid orders are unique by
        # booking_id instead: two orders may well start on the same day).
        Index(
            "uq_invoices_statement_period",
            "advertiser_id",
            "kind",
            "period_start",
            unique=True,
            postgresql_where=text("kind = 'monthly_statement'"),
            sqlite_where=text("kind = 'monthly_statement'"),
        ),
    )


class InvoiceLine(Base):
    """What one kiosk of one booking costs on one invoice: `days` kiosk-days (the
    booking's local dates `first_day`..`last_day` on that kiosk) for `amount_fen`."""

    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), index=True)
    kiosk_id: Mapped[str | None] = mapped_column(ForeignKey("kiosks.id"), index=True)
    description: Mapped[str] = mapped_column(String(300))
    spots_per_loop: Mapped[int] = mapped_column(Integer)
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    days: Mapped[int] = mapped_column(Integer)
    amount_fen: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("days > 0", name="days_positive"),
        CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
        CheckConstraint("first_day <= last_day", name="days_ordered"),
    )
