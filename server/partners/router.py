"""HTTP only: /api/v1/partners."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from server.accounts.router import OperatorDep, current_operator
from server.core.http import SessionDep
from server.partners import service
from server.partners.schemas import PartnerCreate, PartnerOut, PartnerTermsUpdate

router = APIRouter(prefix="/api/v1/partners", tags=["partners"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(current_operator)],
    summary="Register a city partner",
)
def create_partner(body: PartnerCreate, session: SessionDep) -> PartnerOut:
    partner = service.register_partner(session, name=body.name, region=body.region)
    return PartnerOut.model_validate(partner)


@router.get("", summary="List partners")
def list_partners(
    session: SessionDep, region: Annotated[str | None, Query(max_length=120)] = None
) -> list[PartnerOut]:
    return [PartnerOut.model_validate(p) for p in service.list_partners(session, region=region)]


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
