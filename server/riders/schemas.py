from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from server.rentals.schemas import RentalOut


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    #: The `wx.login` code (valid five minutes, exchangeable once).
    code: str = Field(min_length=1, max_length=128, examples=["0a3Xyz000abc"])


class LoginOut(BaseModel):
    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: datetime
    rider_id: int


class DepositOut(BaseModel):
    """`held` only after WeChat Pay confirmed the payment (never on the client's word)."""

    state: Literal["none", "pending", "held", "refunding", "refunded", "forfeited"]
    amount_fen: int
    #: What the ledger says we hold for the rider, in fen.
    held_fen: int
    payment_id: int | None = None
    out_trade_no: str | None = None
    paid_at: datetime | None = None
    #: The latest withdrawal's refund: pending, processing, succeeded or abnormal.
    refund_status: str | None = None
    out_refund_no: str | None = None


class RiderMeOut(BaseModel):
    rider_id: int
    created_at: datetime
    deposit: DepositOut
    #: The open rental (being unlocked or active), with its deadline; None without one.
    current_rental: RentalOut | None = None
