"""HTTP only: /api/v1/partners."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, status

from server.accounts import service as accounts
from server.accounts.router import OperatorDep, current_principal
from server.accounts.rules import Principal
from server.core.http import SessionDep
from server.partners import service
from server.partners.schemas import PartnerCreate, PartnerListed, PartnerOut, PartnerTermsUpdate

router = APIRouter(prefix="/api/v1/partners", tags=["partners"])


def optional_principal(
    request: Request, session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> Principal | None:
    """Whoever sent credentials (a wrong or expired token is still a 401), or None."""
    if not authorization:
        return None
    return current_principal(request, session, authorization)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a city partner",
)
def create_partner(body: PartnerCreate, session: SessionDep, operator: OperatorDep) -> PartnerOut:
    partner = service.register_partner(session, name=body.name, region=body.region)
    accounts.record_change(
        session,
        operator,
        "partner.register",
        f"partner:{partner.id}",
        f"name {partner.name!r}, region {partner.region!r}",
    )
    return PartnerOut.model_validate(partner)


@router.get(
    "",
    summary="List partners (names and regions; the revenue-share terms only to operators "
    "and to the partner's own users)",
)
def list_partners(
    session: SessionDep,
    principal: Annotated[Principal | None, Depends(optional_principal)],
    region: Annotated[str | None, Query(max_length=120)] = None,
) -> list[PartnerListed]:
    # SPEC §5: a partner sees only its own money; the list itself is public (advertisers
    # pick kiosks by region, the console's pickers), so the terms are left out for others.
    return [
        PartnerListed.of(p, with_terms=principal is not None and principal.may_see_partner(p.id))
        for p in service.list_partners(session, region=region)
    ]


@router.patch("/{partner_id}", summary="Change a partner's revenue-share terms (operators)")
def update_partner_terms(
    partner_id: int, body: PartnerTermsUpdate, session: SessionDep, operator: OperatorDep
) -> PartnerOut:
    partner = service.update_terms(
        session,
        partner_id,
        actor=operator.login,
        revenue_share_bp=body.revenue_share_bp,
        settlement_cycle=body.settlement_cycle,
        payout_mchid=body.payout_mchid,
    )
    return PartnerOut.model_validate(partner)
