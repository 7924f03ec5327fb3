"""HTTP only: /api/v1/deposits (pay, withdraw) and the WeChat Pay notification endpoints."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.accounts.router import current_operator
from server.core.errors import DomainError, Unavailable
from server.core.http import SessionDep, services
from server.deposits import service
from server.deposits.schemas import (
    DepositPaymentOut,
    OperatorRefundOut,
    RefundOut,
    RequestPaymentParams,
    WithdrawalOut,
)
from server.models import RefundStatus
from server.payments.wechatpay import (
    BadSignature,
    Notification,
    StaleTimestamp,
    UnknownSerial,
    VerificationError,
    WeChatPayClient,
    WeChatPayConfig,
)
from server.riders.router import RiderDep, RiderOwnTxDep

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


NotificationHandler = Callable[[Session, WeChatPayConfig, Notification], object]


def _process_notification(
    request: Request, body: bytes, what: str, handle: NotificationHandler
) -> Response:
    """Verify Wechatpay-Signature (platform key, timestamp at most 5 minutes off), decrypt
    the AEAD_AES_256_GCM resource, then `handle` it in one transaction owned here.

    204 = processed (or nothing to do), so WeChat stops retrying; otherwise WeChat's FAIL
    answer, and a refusal changes nothing: 401 (signature, serial, stale timestamp), 400
    (undecryptable, malformed, or verified but not matching ours), 404 (not ours), 5xx
    (retry later)."""
    svc = services(request)
    client = svc.wechatpay
    if client is None:
        return _fail(503, "WeChat Pay is not configured on this server")
    try:
        notification = client.parse_notification(request.headers, body)
    except (BadSignature, StaleTimestamp, UnknownSerial) as exc:
        log.warning("WeChat Pay %s notification refused: %s", what, exc)
        return _fail(401, f"{type(exc).__name__}: {exc}")
    except VerificationError as exc:
        log.warning("WeChat Pay %s notification refused: %s", what, exc)
        return _fail(400, f"{type(exc).__name__}: {exc}")
    try:
        # Immediate: on SQLite take the write lock at BEGIN (this reads, then writes, and
        # races the jobs and WeChat's own retries); no effect on PostgreSQL's row locks.
        with svc.db.transaction(immediate=True) as session:
            handle(session, client.config, notification)
    except DomainError as exc:
        return _fail(exc.status_code, exc.message)
    except SQLAlchemyError:
        # Nothing committed; WeChat Pay retries on its schedule (and the jobs reconcile).
        log.exception("WeChat Pay %s notification not processed", what)
        return _fail(500, "temporarily unable to process the notification")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/v1/payments/wechat/notify",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="WeChat Pay payment notifications (public; verified by signature)",
    response_class=Response,
)
def wechat_pay_notify(request: Request, body: Annotated[bytes, Depends(_raw_body)]) -> Response:
    """TRANSACTION.SUCCESS holds the deposit (`service.settle_paid_order`)."""
    return _process_notification(request, body, "payment", service.handle_notification)


@router.post(
    "/api/v1/payments/wechat/refund-notify",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="WeChat Pay refund notifications (public; verified by signature)",
    response_class=Response,
)
def wechat_refund_notify(request: Request, body: Annotated[bytes, Depends(_raw_body)]) -> Response:
    """REFUND.SUCCESS refunds the deposit, once (`service.settle_refund`); REFUND.ABNORMAL
    and REFUND.CLOSED mark the refund abnormal for an operator."""
    return _process_notification(request, body, "refund", service.handle_refund_notification)


# -- withdrawal -----------------------------------------------------------------------------


def _withdrawal_out(withdrawal: service.Withdrawal) -> WithdrawalOut:
    return WithdrawalOut(
        state=withdrawal.state,
        amount_fen=withdrawal.amount_fen,
        refunds=[RefundOut.model_validate(r) for r in withdrawal.refunds],
    )


@router.post(
    "/api/v1/deposits/withdraw",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Withdraw the deposit: refunded through WeChat Pay",
    responses={
        200: {"description": "The withdrawal an earlier request made (nothing new)"},
        409: {"description": "`rental_open` (return the umbrella first) or `no_deposit`"},
    },
)
def withdraw_deposit(
    request: Request, response: Response, rider: RiderOwnTxDep, client: PayDep
) -> WithdrawalOut:
    """Accepted (202) once recorded: the rider sees `refunding` until WeChat Pay reports the
    refund succeeded (`GET /api/v1/deposits/refund`). A repeated request answers 200 with
    the same refund, never a second one.

    Two units of work, each its own transaction (like the rent path; the rider dependency's
    session only reads): the withdrawal commits before WeChat Pay is asked, so money never
    moves for a withdrawal we have no record of. A refused or unanswered request leaves the
    refund `pending`, and `jobs.retry_refunds` asks again with the same out_refund_no."""
    svc = services(request)
    with svc.db.transaction(immediate=True) as session:
        withdrawal = service.withdraw(session, rider)
    if not withdrawal.created:
        response.status_code = status.HTTP_200_OK
        return _withdrawal_out(withdrawal)
    refunds = []
    for refund in withdrawal.refunds:
        try:
            with svc.db.transaction(immediate=True) as session:
                refunds.append(
                    service.submit_refund(
                        session,
                        client,
                        refund.id,
                        notify_url=svc.settings.wechatpay_refund_notify_url,
                    )
                )
        except SQLAlchemyError:
            # The withdrawal is committed: the retry job makes the request.
            log.exception("refund %s not requested now; left to the job", refund.out_refund_no)
            refunds.append(refund)
    return _withdrawal_out(service.Withdrawal(tuple(refunds), created=True))


@router.get(
    "/api/v1/deposits/refund",
    summary="The rider's latest deposit refund",
    responses={404: {"description": "`no_refund`: the rider never withdrew"}},
)
def latest_refund(rider: RiderDep, session: SessionDep) -> RefundOut:
    refund = service.latest_refund(session, rider)
    if refund is None:
        raise service.NoRefund("this rider has no deposit refund", rider_id=rider.id)
    return RefundOut.model_validate(refund)


@router.get(
    "/api/v1/deposit-refunds",
    summary="Deposit refunds, newest first (operators; `status=abnormal` needs action)",
    dependencies=[Depends(current_operator)],
)
def list_refunds(
    session: SessionDep,
    refund_status: Annotated[RefundStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OperatorRefundOut]:
    return [
        OperatorRefundOut.model_validate(r)
        for r in service.list_refunds(session, refund_status, limit)
    ]
