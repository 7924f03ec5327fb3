"""Billing I/O. Money is integer fen (`*_fen`); dates are billing-time-zone calendar dates,
except credits' and lines' days, which are the kiosk's local dates."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from server.models.billing import InvoiceKind, InvoiceStatus


class InvoiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    advertiser_id: int
    kind: InvoiceKind
    #: The booking a prepaid order bills; null on monthly statements.
    booking_id: int | None
    period_start: date
    period_end: date
    issued_on: date
    due_on: date
    subtotal_fen: int
    credits_fen: int
    #: subtotal_fen - credits_fen, never negative.
    total_fen: int
    status: InvoiceStatus
    paid_at: datetime | None
    payment_reference: str | None
    created_at: datetime


class InvoiceLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    booking_id: int
    kiosk_id: str | None
    description: str
    spots_per_loop: int
    first_day: date
    last_day: date
    days: int
    amount_fen: int


class CreditOut(BaseModel):
    """Money owed back for spots lost on one kiosk-day; `applied` once an invoice took it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    booking_id: int
    kiosk_id: str
    local_date: date
    spots: int
    amount_fen: int
    created_at: datetime
    invoice_id: int | None
    state: Literal["open", "applied"]


class InvoiceDetailOut(InvoiceOut):
    lines: list[InvoiceLineOut]
    credits: list[CreditOut]


class MarkPaidIn(BaseModel):
    #: The bank transfer's or payment processor's reference, as on the statement of account.
    payment_reference: str = Field(min_length=1, max_length=128)
