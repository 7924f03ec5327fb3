from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from server.models.partner import Partner, SettlementCycle


class PartnerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=120, examples=["杭州伞伙伴"])
    region: str = Field(min_length=1, max_length=120, examples=["Hangzhou"])


class PartnerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    region: str
    revenue_share_bp: int
    settlement_cycle: SettlementCycle
    payout_mchid: str | None
    created_at: datetime


class PartnerListed(BaseModel):
    """A partner in the public list: the revenue-share terms are null unless the caller is
    an operator or one of the partner's own users."""

    id: int
    name: str
    region: str
    revenue_share_bp: int | None = None
    settlement_cycle: SettlementCycle | None = None
    payout_mchid: str | None = None
    created_at: datetime

    @classmethod
    def of(cls, partner: Partner, *, with_terms: bool) -> PartnerListed:
        listed = cls(
            id=partner.id, name=partner.name, region=partner.region, created_at=partner.created_at
        )
        if with_terms:
            listed.revenue_share_bp = partner.revenue_share_bp
            listed.settlement_cycle = partner.settlement_cycle
            listed.payout_mchid = partner.payout_mchid
        return listed


class PartnerTermsUpdate(BaseModel):
    """Revenue-share terms an operator may change; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    revenue_share_bp: int | None = Field(default=None, ge=0, le=10000, examples=[3000])
    settlement_cycle: SettlementCycle | None = None
    payout_mchid: str | None = Field(
        default=None, min_length=1, max_length=32, pattern=r"^[0-9]+$", examples=["1900000110"]
    )
