"""Every query of the billing domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from server.models import Advertiser, AuditLog, BillingMode, Booking, BookingKiosk, BookingStatus
from server.models.billing import Invoice, InvoiceKind, InvoiceLine, InvoiceStatus
from server.models.delivery import AdCredit


def advertiser(session: Session, advertiser_id: int) -> Advertiser | None:
    return session.get(Advertiser, advertiser_id)


def invoice(session: Session, invoice_id: int, *, lock: bool = False) -> Invoice | None:
    stmt = select(Invoice).where(Invoice.id == invoice_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def invoice_for_booking(session: Session, booking_id: int) -> Invoice | None:
    return session.scalars(select(Invoice).where(Invoice.booking_id == booking_id)).first()


def same_invoice_exists(
    session: Session,
    advertiser_id: int,
    kind: InvoiceKind,
    booking_id: int | None,
    period_start: date,
) -> bool:
    """Whether the invoice a UNIQUE key guards exists: the booking's prepaid order, or the
    advertiser's statement for the month."""
    if kind is InvoiceKind.PREPAID_ORDER:
        where = Invoice.booking_id == booking_id
    else:
        where = (
            (Invoice.advertiser_id == advertiser_id)
            & (Invoice.kind == kind)
            & (Invoice.period_start == period_start)
        )
    return session.scalar(select(exists().where(where))) is True


def invoices(
    session: Session,
    *,
    advertiser_id: int | None = None,
    status: InvoiceStatus | None = None,
    kind: InvoiceKind | None = None,
    limit: int,
) -> Sequence[Invoice]:
    stmt = select(Invoice)
    if advertiser_id is not None:
        stmt = stmt.where(Invoice.advertiser_id == advertiser_id)
    if status is not None:
        stmt = stmt.where(Invoice.status == status)
    if kind is not None:
        stmt = stmt.where(Invoice.kind == kind)
    return session.scalars(stmt.order_by(Invoice.id.desc()).limit(limit)).all()


def lines(session: Session, invoice_id: int) -> Sequence[InvoiceLine]:
    return session.scalars(
        select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).order_by(InvoiceLine.id)
    ).all()


def credits_of_invoice(session: Session, invoice_id: int) -> Sequence[AdCredit]:
    return session.scalars(
        select(AdCredit).where(AdCredit.invoice_id == invoice_id).order_by(AdCredit.id)
    ).all()


def credits_of_advertiser(
    session: Session, advertiser_id: int, *, open_only: bool = False
) -> Sequence[AdCredit]:
    stmt = select(AdCredit).where(AdCredit.advertiser_id == advertiser_id)
    if open_only:
        stmt = stmt.where(AdCredit.invoice_id.is_(None))
    return session.scalars(stmt.order_by(AdCredit.created_at, AdCredit.id)).all()


def claim_credit(session: Session, credit_id: int, invoice_id: int) -> bool:
    """Apply one open credit to an invoice. Conditional, so a credit two invoices race for
    (a statement and a prepaid order, two scheduler processes) lands on exactly one."""
    result = session.execute(
        update(AdCredit)
        .where(AdCredit.id == credit_id, AdCredit.invoice_id.is_(None))
        .values(invoice_id=invoice_id)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def add_invoice(session: Session, invoice: Invoice, invoice_lines: Sequence[InvoiceLine]) -> None:
    """Insert the invoice (flushed first, so a lost race on a UNIQUE key raises here, before
    anything else is written), then its lines."""
    session.add(invoice)
    session.flush()
    for line in invoice_lines:
        line.invoice_id = invoice.id
    session.add_all(invoice_lines)
    session.flush()


def booking_kiosks(session: Session, booking_id: int) -> Sequence[BookingKiosk]:
    return session.scalars(
        select(BookingKiosk)
        .where(BookingKiosk.booking_id == booking_id)
        .order_by(BookingKiosk.kiosk_id)
    ).all()


def monthly_advertisers_without_statement(session: Session, period_start: date) -> list[int]:
    issued = exists().where(
        Invoice.advertiser_id == Advertiser.id,
        Invoice.kind == InvoiceKind.MONTHLY_STATEMENT,
        Invoice.period_start == period_start,
    )
    return list(
        session.scalars(
            select(Advertiser.id)
            .where(Advertiser.billing_mode == BillingMode.MONTHLY, ~issued)
            .order_by(Advertiser.id)
        )
    )


@dataclass(frozen=True, slots=True)
class BillableKiosk:
    booking_id: int
    booking_name: str
    spots_per_loop: int
    start_date: date
    end_date: date
    kiosk_id: str
    price_fen: int


def billable_kiosks(
    session: Session, advertiser_id: int, period_start: date, period_end: date
) -> list[BillableKiosk]:
    """The advertiser's confirmed bookings' kiosks with a day in the period, except bookings
    already billed by a prepaid order (an advertiser that switched from prepaid)."""
    prepaid = exists().where(Invoice.booking_id == Booking.id)
    rows = session.execute(
        select(
            Booking.id,
            Booking.name,
            Booking.spots_per_loop,
            Booking.start_date,
            Booking.end_date,
            BookingKiosk.kiosk_id,
            BookingKiosk.price_fen,
        )
        .join(BookingKiosk, BookingKiosk.booking_id == Booking.id)
        .where(
            Booking.advertiser_id == advertiser_id,
            Booking.status == BookingStatus.CONFIRMED,
            Booking.start_date <= period_end,
            Booking.end_date >= period_start,
            ~prepaid,
        )
        .order_by(Booking.id, BookingKiosk.kiosk_id)
    )
    return [BillableKiosk(*row) for row in rows]


def add_audit(session: Session, entry: AuditLog) -> None:
    session.add(entry)
    session.flush()
