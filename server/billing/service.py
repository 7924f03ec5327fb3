"""Billing use cases (SPEC §4 Billing). Services flush, never commit: the request, the
booking confirmation or the job run that called them owns the transaction."""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.billing import repository as repo
from server.billing import rules
from server.billing.rules import DayShare, OpenCredit, StatementDates
from server.config import get_settings
from server.core.clock import clock
from server.core.errors import Conflict, DomainError, NotFound
from server.core.money import Fen, yuan_str
from server.ledger import service as ledger
from server.models import AuditLog, BillingMode, Booking, BookingStatus
from server.models.billing import Invoice, InvoiceKind, InvoiceLine, InvoiceStatus
from server.models.delivery import AdCredit
from server.models.ledger import EntryKind

log = logging.getLogger(__name__)

#: The payment reference recorded on an invoice that leaves nothing to pay (its credits
#: cover all of it): it is paid on issue, so it never waits in the operators' unpaid list.
NOTHING_DUE = "nothing-due"
MAX_REFERENCE_LENGTH = 128
DEFAULT_LIST_LIMIT = 200
MAX_LIST_LIMIT = 1000
CSV_HEADER = (
    "invoice_id",
    "kind",
    "booking_id",
    "kiosk_id",
    "first_day",
    "last_day",
    "days",
    "description",
    "amount_yuan",
)


class InvoiceNotFound(NotFound):
    code = "invoice_not_found"


class InvoiceAlreadyPaid(Conflict):
    code = "invoice_already_paid"


class BookingNotConfirmed(Conflict):
    code = "booking_not_confirmed"


class InvalidPaymentReference(DomainError):
    code = "invalid_payment_reference"


@dataclass(frozen=True)
class InvoiceDetail:
    invoice: Invoice
    lines: Sequence[InvoiceLine]
    credits: Sequence[AdCredit]


def _billing_timezone(given: str | None) -> str:
    return given or get_settings().billing_timezone


# -- issuing ----------------------------------------------------------------------------------


def on_booking_confirmed(
    session: Session, booking: Booking, *, billing_timezone: str | None = None
) -> None:
    """Bill a just-confirmed booking: a prepaid advertiser gets a prepaid order (one line per
    kiosk, open credits applied, due on issue); a monthly advertiser gets nothing now (the
    monthly statement bills it). Idempotent: a booking has at most one order."""
    if booking.status is not BookingStatus.CONFIRMED:
        raise BookingNotConfirmed(
            f"booking {booking.id} is {booking.status.value}; only a confirmed booking is billed",
            booking_id=booking.id,
            status=booking.status.value,
        )
    advertiser = repo.advertiser(session, booking.advertiser_id)
    if advertiser is None or advertiser.billing_mode is not BillingMode.PREPAID:
        return
    if repo.invoice_for_booking(session, booking.id) is not None:
        return
    now = clock.now()
    today = rules.local_date(now, _billing_timezone(billing_timezone))
    lines = [
        _line(
            booking.id,
            booking.name,
            booking.spots_per_loop,
            bk.kiosk_id,
            DayShare(booking.start_date, booking.end_date, bk.days, Fen(bk.price_fen)),
        )
        for bk in repo.booking_kiosks(session, booking.id)
    ]
    invoice = Invoice(
        advertiser_id=booking.advertiser_id,
        kind=InvoiceKind.PREPAID_ORDER,
        booking_id=booking.id,
        period_start=booking.start_date,
        period_end=booking.end_date,
        issued_on=today,
        due_on=today,
    )
    if _issue(session, invoice, lines, now) is None:
        log.info("booking %s was billed by a concurrent confirmation", booking.id)


def issue_statement(
    session: Session, advertiser_id: int, dates: StatementDates, *, now: datetime
) -> Invoice | None:
    """The advertiser's statement for `dates`' month: each confirmed booking kiosk's share
    of the month (rules.prorate), minus open credits. None when the month bills nothing or
    the statement already exists (issued earlier or by a concurrent scheduler process)."""
    lines: list[InvoiceLine] = []
    for row in repo.billable_kiosks(session, advertiser_id, dates.period_start, dates.period_end):
        share = rules.share_in(Fen(row.price_fen), row.start_date, row.end_date, dates.period_start)
        if share is not None:
            lines.append(
                _line(row.booking_id, row.booking_name, row.spots_per_loop, row.kiosk_id, share)
            )
    if not lines:
        return None
    invoice = Invoice(
        advertiser_id=advertiser_id,
        kind=InvoiceKind.MONTHLY_STATEMENT,
        booking_id=None,
        period_start=dates.period_start,
        period_end=dates.period_end,
        issued_on=dates.issued_on,
        due_on=dates.due_on,
    )
    return _issue(session, invoice, lines, now)


def _line(booking_id: int, name: str, spots: int, kiosk_id: str, share: DayShare) -> InvoiceLine:
    return InvoiceLine(
        booking_id=booking_id,
        kiosk_id=kiosk_id,
        description=rules.line_description(booking_id, name, kiosk_id, spots, share),
        spots_per_loop=spots,
        first_day=share.first_day,
        last_day=share.last_day,
        days=share.days,
        amount_fen=share.amount,
    )


def _issue(
    session: Session, invoice: Invoice, lines: Sequence[InvoiceLine], now: datetime
) -> Invoice | None:
    """Insert the invoice and its lines and apply open credits, in one savepoint. None when a
    UNIQUE key says it exists already (then nothing of this call was written)."""
    subtotal = rules.total_of(line.amount_fen for line in lines)
    invoice.subtotal_fen = subtotal
    invoice.credits_fen = 0
    invoice.total_fen = subtotal
    invoice.status = InvoiceStatus.ISSUED
    invoice.created_at = now
    # Flush the caller's pending work first, so an IntegrityError below can only be ours.
    session.flush()
    try:
        with session.begin_nested():
            repo.add_invoice(session, invoice, lines)
            open_credits = repo.credits_of_advertiser(
                session, invoice.advertiser_id, open_only=True
            )
            plan = rules.apply_credits(
                subtotal, [OpenCredit(c.id, Fen(c.amount_fen)) for c in open_credits]
            )
            amounts = {c.id: c.amount_fen for c in open_credits}
            claimed = [cid for cid in plan.applied if repo.claim_credit(session, cid, invoice.id)]
            credits = rules.total_of(amounts[cid] for cid in claimed)
            invoice.credits_fen = credits
            invoice.total_fen = subtotal - credits
            if invoice.total_fen == 0:
                invoice.status = InvoiceStatus.PAID
                invoice.paid_at = now
                invoice.payment_reference = NOTHING_DUE
            session.flush()
            revenue: dict[str | None, Fen] = defaultdict(lambda: Fen(0))
            for line in lines:
                revenue[line.kiosk_id] = Fen(revenue[line.kiosk_id] + line.amount_fen)
            credited: dict[str | None, Fen] = defaultdict(lambda: Fen(0))
            for credit in open_credits:
                if credit.id in claimed:
                    credited[credit.kiosk_id] = Fen(credited[credit.kiosk_id] + credit.amount_fen)
            _post(session, EntryKind.AD_INVOICE_ISSUED, invoice, revenue, credited)
    except IntegrityError:
        # The savepoint is gone and this call wrote nothing. Only a lost race on one of the
        # UNIQUE keys is expected here; anything else (a kiosk that does not exist) is a bug.
        if repo.same_invoice_exists(
            session, invoice.advertiser_id, invoice.kind, invoice.booking_id, invoice.period_start
        ):
            return None
        raise
    return invoice


# -- reading ----------------------------------------------------------------------------------


def invoices_of_advertiser(
    session: Session, advertiser_id: int, *, limit: int = DEFAULT_LIST_LIMIT
) -> Sequence[Invoice]:
    return repo.invoices(session, advertiser_id=advertiser_id, limit=limit)


def invoices_for_operator(
    session: Session,
    *,
    advertiser_id: int | None = None,
    status: InvoiceStatus | None = None,
    kind: InvoiceKind | None = None,
    limit: int = DEFAULT_LIST_LIMIT,
) -> Sequence[Invoice]:
    return repo.invoices(
        session, advertiser_id=advertiser_id, status=status, kind=kind, limit=limit
    )


def invoice_detail(
    session: Session, invoice_id: int, *, advertiser_id: int | None = None
) -> InvoiceDetail:
    """One invoice with its lines and applied credits. With `advertiser_id`, another
    advertiser's invoice is not found (404, so ids do not leak)."""
    invoice = repo.invoice(session, invoice_id)
    if invoice is None or (advertiser_id is not None and invoice.advertiser_id != advertiser_id):
        raise InvoiceNotFound(f"no invoice {invoice_id}", invoice_id=invoice_id)
    return InvoiceDetail(
        invoice, repo.lines(session, invoice.id), repo.credits_of_invoice(session, invoice.id)
    )


def credits_of_advertiser(session: Session, advertiser_id: int) -> Sequence[AdCredit]:
    """Applied and open credits, oldest first."""
    return repo.credits_of_advertiser(session, advertiser_id)


def invoice_csv(detail: InvoiceDetail) -> str:
    """The invoice as CSV for spreadsheets: one row per line, then the applied credits
    (negative), then the total. Amounts in yuan, exact (from fen)."""
    inv = detail.invoice
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for line in detail.lines:
        writer.writerow(
            [
                inv.id,
                inv.kind.value,
                line.booking_id,
                line.kiosk_id or "",
                line.first_day.isoformat(),
                line.last_day.isoformat(),
                line.days,
                line.description,
                yuan_str(Fen(line.amount_fen)),
            ]
        )
    for credit in detail.credits:
        writer.writerow(
            [
                inv.id,
                "credit",
                credit.booking_id,
                credit.kiosk_id,
                credit.local_date.isoformat(),
                credit.local_date.isoformat(),
                "",
                f"Credit #{credit.id}: {credit.spots} spot(s) lost",
                yuan_str(Fen(-credit.amount_fen)),
            ]
        )
    writer.writerow([inv.id, "total", "", "", "", "", "", "", yuan_str(Fen(inv.total_fen))])
    return out.getvalue()


# -- paying -----------------------------------------------------------------------------------


def mark_paid(session: Session, invoice_id: int, payment_reference: str, *, actor: str) -> Invoice:
    """Record that an invoice was paid. Idempotent: the same reference again changes nothing;
    a different reference for a paid invoice is a conflict (a second payment to sort out by
    hand, not to overwrite)."""
    reference = payment_reference.strip()
    if not reference or len(reference) > MAX_REFERENCE_LENGTH:
        raise InvalidPaymentReference(
            f"payment_reference must be 1..{MAX_REFERENCE_LENGTH} characters",
            payment_reference=payment_reference,
        )
    invoice = repo.invoice(session, invoice_id, lock=True)
    if invoice is None:
        raise InvoiceNotFound(f"no invoice {invoice_id}", invoice_id=invoice_id)
    if invoice.status is InvoiceStatus.PAID:
        if invoice.payment_reference == reference:
            return invoice
        raise InvoiceAlreadyPaid(
            f"invoice {invoice_id} was already paid with reference {invoice.payment_reference!r}",
            invoice_id=invoice_id,
            payment_reference=invoice.payment_reference,
        )
    now = clock.now()
    invoice.status = InvoiceStatus.PAID
    invoice.paid_at = now
    invoice.payment_reference = reference
    _post(
        session,
        EntryKind.AD_INVOICE_PAID,
        invoice,
        {None: Fen(invoice.subtotal_fen)},
        {None: Fen(invoice.credits_fen)},
    )
    repo.add_audit(
        session,
        AuditLog(
            actor=actor[:64],
            action="invoice.paid",
            subject=f"invoice:{invoice.id}",
            reason=f"payment {reference}",
            detail=f"advertiser {invoice.advertiser_id}, total {invoice.total_fen} fen",
            created_at=now,
        ),
    )
    return invoice


def _post(
    session: Session,
    kind: EntryKind,
    invoice: Invoice,
    revenue: Mapping[str | None, Fen],
    credits: Mapping[str | None, Fen],
) -> None:
    """Issuing: receivable and credits (contra-revenue) against ad revenue, per kiosk, so
    partners' revenue share is computed from the ledger; paying: bank against receivable
    (server/ledger/rules.py)."""
    ledger.post_invoice(
        session,
        kind,
        advertiser_id=invoice.advertiser_id,
        invoice_id=invoice.id,
        revenue=revenue,
        credits=credits,
    )
