from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class RequestPaymentParams(BaseModel):
    """Exactly what the mini-program passes to `wx.requestPayment`, in WeChat's own
    (camelCase) field names, so the client passes the object through as is."""

    appId: str
    timeStamp: str
    nonceStr: str
    package: str
    signType: str
    paySign: str


class DepositPaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    out_trade_no: str
    amount_fen: int
    status: str
    paid_at: datetime | None
    created_at: datetime
    #: Present while the payment is pending; null once WeChat Pay confirmed it.
    request_payment: RequestPaymentParams | None = None


class RefundOut(BaseModel):
    """A deposit refund as the rider sees it: `pending` (WeChat Pay not reached yet; retried),
    `processing` (WeChat Pay is paying it out), `succeeded`, or `abnormal` (the rider's
    WeChat account could not take it; support will act)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    payment_id: int
    out_refund_no: str
    amount_fen: int
    status: str
    created_at: datetime
    succeeded_at: datetime | None


class WithdrawalOut(BaseModel):
    #: `refunding` until every refund succeeded; `abnormal` when one needs an operator.
    state: Literal["refunding", "refunded", "abnormal"]
    amount_fen: int
    refunds: list[RefundOut]


class OperatorRefundOut(RefundOut):
    rider_id: int
    refund_id: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
