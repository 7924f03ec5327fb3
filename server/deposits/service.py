"""The 30-yuan deposit through WeChat Pay (SPEC §2 Deposit, §3).

A deposit becomes `held` in one place only, `settle_paid_order`, fed either by a verified
payment notification or by a verified order query (the reconciliation job, or a rider asking
for a refresh). What the client says about its payment never counts. Services flush, never
commit: the entry point owns the transaction.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.core.clock import clock
from server.core.errors import Conflict, DomainError, NotFound, Unavailable
from server.core.money import DEPOSIT, Fen
from server.deposits import repository as repo
from server.ledger import service as ledger
from server.models import DepositPayment, DepositStatus, EntryKind, Rider
from server.payments.wechatpay import (
    Notification,
    PaymentParams,
    WeChatPayApiError,
    WeChatPayClient,
    WeChatPayConfig,
    WeChatPayError,
    WeChatPayUnavailable,
)

log = logging.getLogger(__name__)

DESCRIPTION = "共享雨伞押金"


class DepositAlreadyHeld(Conflict):
    code = "deposit_already_held"


class PaymentProviderError(DomainError):
    status_code = 502
    code = "wechatpay_error"


class PaymentMismatch(DomainError):
    """WeChat's (verified) word about an order does not match ours: nothing is settled."""

    code = "payment_mismatch"


class UnknownPayment(NotFound):
    code = "unknown_payment"


@dataclass(frozen=True)
class StartedDeposit:
    payment: DepositPayment
    #: `wx.requestPayment` parameters while the payment is pending, else None.
    params: PaymentParams | None
    created: bool


def new_out_trade_no() -> str:
    # WeChat: 6-32 characters of [0-9A-Za-z_-|*]; unique per merchant.
    return f"DEP{clock.now():%Y%m%d%H%M%S}{secrets.token_hex(6)}"


def start_deposit(
    session: Session,
    client: WeChatPayClient,
    rider: Rider,
    *,
    idempotency_key: str,
    notify_url: str,
) -> StartedDeposit:
    """JSAPI prepay for the deposit and the `wx.requestPayment` parameters.

    The same Idempotency-Key returns the same payment (a double tap, a retried request);
    a rider who already holds a deposit is refused. The payment row is written before the
    prepay call, so two racing taps meet at its UNIQUE (rider, key) before WeChat is asked."""
    existing = repo.by_idempotency_key(session, rider.id, idempotency_key)
    if existing is not None:
        return as_started(client, existing, created=False)
    if repo.latest_with_status(session, rider.id, DepositStatus.HELD) is not None:
        raise DepositAlreadyHeld("a deposit is already held for this rider", rider_id=rider.id)
    payment = DepositPayment(
        rider_id=rider.id,
        out_trade_no=new_out_trade_no(),
        idempotency_key=idempotency_key,
        prepay_id=None,
        amount_fen=DEPOSIT,
        status=DepositStatus.PENDING,
        created_at=clock.now(),
    )
    session.flush()
    try:
        with session.begin_nested():
            session.add(payment)
    except IntegrityError:
        existing = repo.by_idempotency_key(session, rider.id, idempotency_key)
        if existing is None:
            raise
        return as_started(client, existing, created=False)
    try:
        payment.prepay_id = client.jsapi_prepay(
            out_trade_no=payment.out_trade_no,
            description=DESCRIPTION,
            total_fen=payment.amount_fen,
            payer_openid=rider.openid,
            notify_url=notify_url,
            attach=f"rider:{rider.id}",
        )
    except WeChatPayError as exc:
        raise _provider_error(exc) from exc
    session.flush()
    return as_started(client, payment, created=True)


def as_started(
    client: WeChatPayClient, payment: DepositPayment, *, created: bool
) -> StartedDeposit:
    params = None
    if payment.status == DepositStatus.PENDING and payment.prepay_id:
        params = client.request_payment_params(payment.prepay_id)
    return StartedDeposit(payment=payment, params=params, created=created)


def _provider_error(exc: WeChatPayError) -> DomainError:
    if isinstance(exc, WeChatPayUnavailable):
        return Unavailable(f"WeChat Pay is unreachable, try again: {exc}")
    if isinstance(exc, WeChatPayApiError):
        return PaymentProviderError(str(exc), wechat_code=exc.code, retryable=exc.retryable)
    return PaymentProviderError(f"WeChat Pay answer not trusted: {exc}")


def handle_notification(
    session: Session, config: WeChatPayConfig, notification: Notification
) -> DepositPayment | None:
    """A verified, decrypted notification (回调通知). Only TRANSACTION.SUCCESS moves money;
    other events are acknowledged and ignored."""
    if notification.event_type != "TRANSACTION.SUCCESS":
        log.info("WeChat Pay notification %s ignored", notification.event_type)
        return None
    return settle_paid_order(session, config, notification.resource)


def settle_paid_order(
    session: Session, config: WeChatPayConfig, transaction: Mapping[str, Any]
) -> DepositPayment:
    """Mark the deposit held and post `deposit_received`, exactly once.

    `transaction` is a WeChat Pay transaction object whose origin is already verified
    (a decrypted notification resource or a signature-checked order query). The payment row
    is locked first, so a notification and the reconciliation job racing each other settle
    it once; the ledger's UNIQUE idempotency key (the transaction id) is the last guard."""
    out_trade_no = str(transaction.get("out_trade_no") or "")
    payment = repo.lock_by_out_trade_no(session, out_trade_no)
    if payment is None:
        raise UnknownPayment(f"no deposit payment {out_trade_no!r}", out_trade_no=out_trade_no)
    rider = session.get(Rider, payment.rider_id)
    amount = transaction.get("amount")
    payer = transaction.get("payer")
    total = amount.get("total") if isinstance(amount, Mapping) else None
    openid = payer.get("openid") if isinstance(payer, Mapping) else None
    transaction_id = str(transaction.get("transaction_id") or "")
    problems = [
        what
        for what, bad in (
            ("trade_state is not SUCCESS", transaction.get("trade_state") != "SUCCESS"),
            ("mchid differs", transaction.get("mchid") != config.mchid),
            ("appid differs", transaction.get("appid") != config.appid),
            (
                f"amount.total {total!r} is not {payment.amount_fen}",
                type(total) is not int or total != payment.amount_fen or total != DEPOSIT,
            ),
            ("payer openid differs", rider is None or openid != rider.openid),
            ("transaction_id missing", not transaction_id),
        )
        if bad
    ]
    if problems:
        log.error("WeChat Pay transaction for %s not settled: %s", out_trade_no, problems)
        raise PaymentMismatch(
            f"payment {out_trade_no} does not match: {'; '.join(problems)}",
            out_trade_no=out_trade_no,
        )
    if payment.status != DepositStatus.PENDING:
        if payment.transaction_id == transaction_id:
            return payment  # a replayed notification, or the other side of a race
        raise PaymentMismatch(
            f"payment {out_trade_no} was settled by another transaction",
            out_trade_no=out_trade_no,
        )
    payment.status = DepositStatus.HELD
    payment.transaction_id = transaction_id
    payment.paid_at = _paid_at(transaction.get("success_time"))
    session.flush()
    ledger.post(
        session,
        EntryKind.DEPOSIT_RECEIVED,
        rider_id=str(payment.rider_id),
        amount=Fen(payment.amount_fen),
        idempotency_key=transaction_id,
        reference=f"payment:{out_trade_no}",
    )
    log.info("deposit %s held (transaction %s)", out_trade_no, transaction_id)
    return payment


def _paid_at(success_time: object) -> datetime:
    if isinstance(success_time, str):
        try:
            parsed = datetime.fromisoformat(success_time)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return clock.now()


def settle_from_query(session: Session, client: WeChatPayClient, payment: DepositPayment) -> bool:
    """Ask WeChat Pay about a pending payment (查询订单, answer signature-verified) and settle
    it when paid; True when it is held afterwards."""
    if payment.status != DepositStatus.PENDING:
        return payment.status == DepositStatus.HELD
    order = client.query_order(payment.out_trade_no)
    if order.get("trade_state") != "SUCCESS":
        return False
    return settle_paid_order(session, client.config, order).status == DepositStatus.HELD


def refresh_payment(
    session: Session, client: WeChatPayClient, rider: Rider, payment_id: int
) -> DepositPayment:
    """The rider's "I paid" after `wx.requestPayment`: not believed, but a reason to ask
    WeChat Pay now rather than wait for the notification."""
    payment = session.get(DepositPayment, payment_id)
    if payment is None or payment.rider_id != rider.id:
        raise NotFound(f"no deposit payment {payment_id}", payment_id=payment_id)
    try:
        settle_from_query(session, client, payment)
    except WeChatPayError as exc:
        raise _provider_error(exc) from exc
    return payment


@dataclass(frozen=True)
class DepositState:
    state: Literal["none", "pending", "held"]
    held_fen: Fen
    payment: DepositPayment | None


def deposit_state(session: Session, rider: Rider) -> DepositState:
    held_fen = ledger.rider_deposit(session, str(rider.id))
    held = repo.latest_with_status(session, rider.id, DepositStatus.HELD)
    if held is not None:
        return DepositState("held", held_fen, held)
    pending = repo.latest_with_status(session, rider.id, DepositStatus.PENDING)
    if pending is not None:
        return DepositState("pending", held_fen, pending)
    return DepositState("none", held_fen, None)
