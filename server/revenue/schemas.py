from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from server.models.partner import SettlementCycle
from server.models.revenue import StatementStatus


class StatementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    partner_id: int
    cycle: SettlementCycle
    period_start: date
    period_end: date
    timezone: str
    rate_bp: int
    ad_revenue_fen: int
    forfeited_fen: int
    credits_fen: int
    carried_in_fen: int
    base_fen: int
    share_fen: int
    carried_out_fen: int
    status: StatementStatus
    out_order_no: str | None
    payout_order_id: str | None
    paid_at: datetime | None
    created_at: datetime


class StatementLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kiosk_id: str
    ad_revenue_fen: int
    forfeited_fen: int
    credits_fen: int


class StatementDetailOut(StatementOut):
    lines: list[StatementLineOut]
