from __future__ import annotations

from datetime import datetime

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
