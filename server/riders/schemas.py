from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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

    state: Literal["none", "pending", "held"]
    amount_fen: int
    #: What the ledger says we hold for the rider, in fen.
    held_fen: int
    payment_id: int | None = None
    out_trade_no: str | None = None
    paid_at: datetime | None = None


class RiderMeOut(BaseModel):
    rider_id: int
    created_at: datetime
    deposit: DepositOut
