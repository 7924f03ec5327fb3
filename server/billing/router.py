"""HTTP only: the billing endpoints (advertiser-side under /api/v1/ads, operator-side under
/api/v1/ops)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from server.accounts.router import AdvertiserDep, OperatorDep
from server.billing import service
from server.billing.schemas import (
    CreditOut,
    InvoiceDetailOut,
    InvoiceLineOut,
    InvoiceOut,
    MarkPaidIn,
)
from server.core.http import SessionDep
from server.models.billing import InvoiceKind, InvoiceStatus
from server.models.delivery import AdCredit

router = APIRouter(prefix="/api/v1", tags=["billing"])


def _advertiser_id(principal: AdvertiserDep) -> int:
    assert principal.advertiser_id is not None  # AdvertiserDep guarantees it
    return principal.advertiser_id


def _credit(credit: AdCredit) -> CreditOut:
    return CreditOut(
        id=credit.id,
        booking_id=credit.booking_id,
        kiosk_id=credit.kiosk_id,
        local_date=credit.local_date,
        spots=credit.spots,
        amount_fen=credit.amount_fen,
        created_at=credit.created_at,
        invoice_id=credit.invoice_id,
        state="open" if credit.invoice_id is None else "applied",
    )


def _detail(detail: service.InvoiceDetail) -> InvoiceDetailOut:
    return InvoiceDetailOut(
        **InvoiceOut.model_validate(detail.invoice).model_dump(),
        lines=[InvoiceLineOut.model_validate(line) for line in detail.lines],
        credits=[_credit(c) for c in detail.credits],
    )


# -- advertisers ------------------------------------------------------------------------------


Limit = Annotated[int, Query(ge=1, le=service.MAX_LIST_LIMIT)]


@router.get("/ads/invoices", summary="The advertiser's invoices, newest first")
def my_invoices(
    principal: AdvertiserDep, session: SessionDep, limit: Limit = service.DEFAULT_LIST_LIMIT
) -> list[InvoiceOut]:
    return [
        InvoiceOut.model_validate(i)
        for i in service.invoices_of_advertiser(session, _advertiser_id(principal), limit=limit)
    ]


@router.get(
    "/ads/invoices/{invoice_id}.csv",
    summary="One of the advertiser's invoices as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def my_invoice_csv(invoice_id: int, principal: AdvertiserDep, session: SessionDep) -> Response:
    detail = service.invoice_detail(session, invoice_id, advertiser_id=_advertiser_id(principal))
    return Response(
        service.invoice_csv(detail),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="invoice-{invoice_id}.csv"'},
    )


@router.get(
    "/ads/invoices/{invoice_id}",
    summary="One of the advertiser's invoices with its lines and applied credits",
)
def my_invoice(invoice_id: int, principal: AdvertiserDep, session: SessionDep) -> InvoiceDetailOut:
    return _detail(
        service.invoice_detail(session, invoice_id, advertiser_id=_advertiser_id(principal))
    )


@router.get("/ads/credits", summary="The advertiser's credits for lost spots, applied and open")
def my_credits(principal: AdvertiserDep, session: SessionDep) -> list[CreditOut]:
    return [_credit(c) for c in service.credits_of_advertiser(session, _advertiser_id(principal))]


# -- operators --------------------------------------------------------------------------------


@router.get("/ops/invoices", summary="Invoices of every advertiser (operators)")
def ops_invoices(
    _: OperatorDep,
    session: SessionDep,
    advertiser_id: Annotated[int | None, Query()] = None,
    status: Annotated[InvoiceStatus | None, Query()] = None,
    kind: Annotated[InvoiceKind | None, Query()] = None,
    limit: Limit = service.DEFAULT_LIST_LIMIT,
) -> list[InvoiceOut]:
    """Newest first."""
    return [
        InvoiceOut.model_validate(i)
        for i in service.invoices_for_operator(
            session, advertiser_id=advertiser_id, status=status, kind=kind, limit=limit
        )
    ]


@router.get("/ops/invoices/{invoice_id}", summary="One invoice with lines and credits (operators)")
def ops_invoice(invoice_id: int, _: OperatorDep, session: SessionDep) -> InvoiceDetailOut:
    return _detail(service.invoice_detail(session, invoice_id))


@router.post(
    "/ops/invoices/{invoice_id}/paid",
    summary="Record an invoice's payment (operators)",
    responses={409: {"description": "`invoice_already_paid` with another reference"}},
)
def ops_mark_paid(
    invoice_id: int, body: MarkPaidIn, principal: OperatorDep, session: SessionDep
) -> InvoiceOut:
    """Idempotent: the same reference again answers the paid invoice and records nothing."""
    invoice = service.mark_paid(session, invoice_id, body.payment_reference, actor=principal.login)
    return InvoiceOut.model_validate(invoice)
