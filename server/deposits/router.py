"""HTTP only: /api/v1/deposits and the WeChat Pay notification endpoint."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from server.core.errors import DomainError, Unavailable
from server.core.http import SessionDep, services
from server.deposits import service
from server.deposits.schemas import DepositPaymentOut, RequestPaymentParams
from server.payments.wechatpay import (
    BadSignature,
    StaleTimestamp,
    UnknownSerial,
    VerificationError,
    WeChatPayClient,
)
from server.riders.router import RiderDep

log = logging.getLogger(__name__)

router = APIRouter(tags=["deposits"])


def wechatpay_client(request: Request) -> WeChatPayClient:
    client = services(request).wechatpay
    if client is None:
        raise Unavailable("WeChat Pay is not configured on this server")
    return client


PayDep = Annotated[WeChatPayClient, Depends(wechatpay_client)]


def _out(started: service.StartedDeposit) -> DepositPaymentOut:
    out = DepositPaymentOut.model_validate(started.payment)
    if started.params is not None:
        out.request_payment = RequestPaymentParams(**started.params.as_dict())
    return out


@router.post(
    "/api/v1/deposits",
    status_code=status.HTTP_201_CREATED,
    summary="Start paying the 30-yuan deposit (JSAPI prepay)",
    responses={200: {"description": "The payment of an earlier request with the same key"}},
)
def create_deposit(
    request: Request,
    response: Response,
    rider: RiderDep,
    session: SessionDep,
    client: PayDep,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)],
) -> DepositPaymentOut:
    """Returns the `wx.requestPayment` parameters. The same Idempotency-Key returns the same
    payment (200); the deposit turns `held` only when WeChat Pay confirms it."""
    started = service.start_deposit(
        session,
        client,
        rider,
        idempotency_key=idempotency_key,
        notify_url=services(request).settings.wechatpay_notify_url,
    )
    if not started.created:
        response.status_code = status.HTTP_200_OK
    return _out(started)


@router.post(
    "/api/v1/deposits/{payment_id}/refresh",
    summary="Ask WeChat Pay about a pending payment now (after wx.requestPayment succeeded)",
)
def refresh_deposit(
    payment_id: int, rider: RiderDep, session: SessionDep, client: PayDep
) -> DepositPaymentOut:
    payment = service.refresh_payment(session, client, rider, payment_id)
    return _out(service.as_started(client, payment, created=False))


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _fail(status_code: int, message: str) -> JSONResponse:
    # WeChat Pay's documented failure answer (回调通知 应答): it retries until 200/204.
    return JSONResponse({"code": "FAIL", "message": message}, status_code=status_code)


@router.post(
    "/api/v1/payments/wechat/notify",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="WeChat Pay payment notifications (public; verified by signature)",
    response_class=Response,
)
def wechat_pay_notify(request: Request, body: Annotated[bytes, Depends(_raw_body)]) -> Response:
    """Verifies Wechatpay-Signature (platform key, timestamp at most 5 minutes off),
    decrypts the AEAD_AES_256_GCM resource, then settles in one transaction owned here.
    204 = processed (or nothing to do), so WeChat stops retrying; a refusal changes nothing."""
    svc = services(request)
    client = svc.wechatpay
    if client is None:
        return _fail(503, "WeChat Pay is not configured on this server")
    try:
        notification = client.parse_notification(request.headers, body)
    except (BadSignature, StaleTimestamp, UnknownSerial) as exc:
        log.warning("WeChat Pay notification refused: %s", exc)
        return _fail(401, f"{type(exc).__name__}: {exc}")
    except VerificationError as exc:
        log.warning("WeChat Pay notification refused: %s", exc)
        return _fail(400, f"{type(exc).__name__}: {exc}")
    try:
        with svc.db.transaction() as session:
            service.handle_notification(session, client.config, notification)
    except DomainError as exc:
        return _fail(exc.status_code, exc.message)
    except SQLAlchemyError:
        # Nothing committed; WeChat Pay retries on its schedule (and the job reconciles).
        log.exception("WeChat Pay notification not processed")
        return _fail(500, "temporarily unable to process the notification")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
