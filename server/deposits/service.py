"""The 30-yuan deposit through WeChat Pay (SPEC §2 Deposit, §3).

A deposit becomes `held` in one place only, `settle_paid_order`, fed either by a verified
payment notification or by a verified order query (the reconciliation job, or a rider asking
for a refresh). What the client says about its payment never counts.

A withdrawal (SPEC §2: no open rental; refunded through WeChat Pay, never by hand) is two
units of work: `withdraw` records it (payment `refunding`, a `pending` DepositRefund with an
out_refund_no that follows from the payment), then `submit_refund` asks WeChat Pay, in a
transaction of its own, so the intent is committed before any money moves and a crash
in between leaves a pending refund the retry job finishes. The money is accounted for in
one place only, `settle_refund`, fed by a verified refund notification, by WeChat's
(signature-checked) answer to the refund request or by a refund query.

Services flush, never commit: the entry point owns the transaction.
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
from server.deposits import rules
from server.ledger import service as ledger
from server.models import (
    DepositPayment,
    DepositRefund,
    DepositStatus,
    EntryKind,
    RefundStatus,
    Rider,
)
from server.notifications import rules as notification_rules
from server.notifications import service as notifications
from server.payments.wechatpay import (
    Notification,
    OrderNotFound,
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
            time_expire=payment.created_at + rules.PAYMENT_WINDOW,
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
    payment.paid_at = _wechat_time(transaction.get("success_time"))
    session.flush()
    ledger.post(
        session,
        EntryKind.DEPOSIT_RECEIVED,
        rider_id=str(payment.rider_id),
        amount=Fen(payment.amount_fen),
        idempotency_key=transaction_id,
        reference=f"payment:{out_trade_no}",
    )
    notifications.enqueue(
        session,
        payment.rider_id,
        notification_rules.DEPOSIT_RECEIVED,
        f"payment:{out_trade_no}",
        {"amount_fen": payment.amount_fen, "paid_at": payment.paid_at.isoformat()},
    )
    log.info("deposit %s held (transaction %s)", out_trade_no, transaction_id)
    return payment


def _wechat_time(value: object) -> datetime:
    """WeChat's RFC 3339 time (`success_time`), or now when absent or unreadable."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
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


def reconcile_payment(
    session: Session, client: WeChatPayClient, payment: DepositPayment, now: datetime
) -> DepositStatus:
    """The reconciliation job's question about one pending payment (the caller holds it
    locked): paid -> settled as the notification would have (`held`); unpaid past the
    payment window -> closed at WeChat Pay, then `closed`; otherwise still `pending`.

    Closing races the rider's last-second payment: WeChat refuses to close a paid order
    (ORDERPAID), and the order is then queried again and settled, never closed."""
    if payment.status != DepositStatus.PENDING:
        return payment.status
    order = client.query_order(payment.out_trade_no)
    state = order.get("trade_state")
    if state == "SUCCESS":
        return settle_paid_order(session, client.config, order).status
    expired = now >= payment.created_at + rules.PAYMENT_WINDOW + rules.CLOSE_GRACE
    if state == "NOTPAY" and expired:
        try:
            client.close_order(payment.out_trade_no)
        except WeChatPayApiError as exc:
            if exc.code != "ORDERPAID":
                raise
            log.info("deposit %s was paid while being closed", payment.out_trade_no)
            settle_from_query(session, client, payment)
            return payment.status
        state = "CLOSED"
    if state == "CLOSED":
        payment.status = DepositStatus.CLOSED
        session.flush()
        log.info("deposit %s expired unpaid: closed", payment.out_trade_no)
    return payment.status


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
    state: Literal["none", "pending", "held", "refunding", "refunded", "forfeited"]
    held_fen: Fen
    payment: DepositPayment | None
    #: The rider's latest refund (a withdrawal), whatever its status; None if never.
    refund: DepositRefund | None = None


def deposit_state(session: Session, rider: Rider) -> DepositState:
    held_fen = ledger.rider_deposit(session, str(rider.id))
    refund = repo.latest_refund(session, rider.id)
    held = repo.latest_with_status(session, rider.id, DepositStatus.HELD)
    if held is not None:
        return DepositState("held", held_fen, held, refund)
    refunding = repo.latest_with_status(session, rider.id, DepositStatus.REFUNDING)
    if refunding is not None:
        return DepositState("refunding", held_fen, refunding, refund)
    pending = repo.latest_with_status(session, rider.id, DepositStatus.PENDING)
    if pending is not None:
        return DepositState("pending", held_fen, pending, refund)
    # Nothing held or on its way: the newest deposit that ended says how it ended.
    ended = [
        p
        for p in (
            repo.latest_with_status(session, rider.id, DepositStatus.FORFEITED),
            repo.latest_with_status(session, rider.id, DepositStatus.REFUNDED),
        )
        if p is not None
    ]
    if ended:
        last = max(ended, key=lambda p: p.id)
        name: Literal["forfeited", "refunded"] = (
            "forfeited" if last.status is DepositStatus.FORFEITED else "refunded"
        )
        return DepositState(name, held_fen, last, refund)
    return DepositState("none", held_fen, None, refund)


# -- withdrawal and refund (SPEC §2: a rider without an active rental withdraws) -----------

#: Shown to the rider by WeChat with the refund (申请退款 `reason`).
REFUND_REASON = "押金退还"


class RentalOpen(Conflict):
    code = "rental_open"


class NoDeposit(Conflict):
    code = "no_deposit"


class UnknownRefund(NotFound):
    code = "unknown_refund"


class NoRefund(NotFound):
    code = "no_refund"


class RefundMismatch(DomainError):
    """WeChat's (verified) word about a refund does not match ours: nothing is settled."""

    code = "refund_mismatch"


@dataclass(frozen=True)
class Withdrawal:
    """The refunds of one withdrawal: one per held payment (normally exactly one; a rider
    who paid twice gets both back). `created` is False when an earlier request made them."""

    refunds: tuple[DepositRefund, ...]
    created: bool

    @property
    def amount_fen(self) -> Fen:
        return Fen(sum(r.amount_fen for r in self.refunds))

    @property
    def state(self) -> Literal["refunding", "refunded", "abnormal"]:
        statuses = {r.status for r in self.refunds}
        if RefundStatus.ABNORMAL in statuses:
            return "abnormal"
        if statuses == {RefundStatus.SUCCEEDED}:
            return "refunded"
        return "refunding"


def withdraw(session: Session, rider: Rider) -> Withdrawal:
    """Record the rider's withdrawal: every held payment turns `refunding` and gets a
    `pending` refund. WeChat Pay is asked afterwards (`submit_refund`), once this committed.

    The held payment rows are locked first; the rent path locks the same rows, so a rental
    and a withdrawal serialize and the open-rental check below sees any committed rental.
    Idempotent by state: with nothing held, a repeated request gets the refunds of the
    withdrawal already made (never a second refund); `NoDeposit` if there is none."""
    held = repo.lock_held_for_rider(session, rider.id)
    if repo.has_open_rental(session, rider.id):
        raise RentalOpen(
            "the deposit covers an umbrella you have not returned yet; return it first",
            rider_id=rider.id,
        )
    if not held:
        current = _current_withdrawal(session, rider.id)
        if not current:
            raise NoDeposit("no deposit is held for this rider", rider_id=rider.id)
        return Withdrawal(tuple(current), created=False)
    now = clock.now()
    refunds = []
    for payment in held:
        payment.status = DepositStatus.REFUNDING
        refund = DepositRefund(
            payment_id=payment.id,
            rider_id=rider.id,
            out_refund_no=rules.out_refund_no_for(payment.out_trade_no),
            amount_fen=payment.amount_fen,
            status=RefundStatus.PENDING,
            attempts=0,
            # Safety net: if the request below never happens, the retry job makes it.
            next_attempt_at=now + rules.SUBMIT_GRACE,
            created_at=now,
        )
        session.add(refund)
        refunds.append(refund)
    session.flush()
    log.info("rider %s withdrew: %s", rider.id, ", ".join(r.out_refund_no for r in refunds))
    return Withdrawal(tuple(refunds), created=True)


def _current_withdrawal(session: Session, rider_id: int) -> list[DepositRefund]:
    """Refunds still on their way, or else the refund of the rider's latest confirmed
    payment when that payment was refunded (nothing was held since)."""
    unfinished = repo.unfinished_refunds(session, rider_id)
    if unfinished:
        return unfinished
    latest = repo.latest_refund(session, rider_id)
    settled = repo.latest_settled_payment(session, rider_id)
    if latest is not None and settled is not None and settled.id == latest.payment_id:
        return [latest]
    return []


def latest_refund(session: Session, rider: Rider) -> DepositRefund | None:
    return repo.latest_refund(session, rider.id)


def list_refunds(
    session: Session, status: RefundStatus | None = None, limit: int = 100
) -> list[DepositRefund]:
    """Newest first; `status=abnormal` is what operators have to look at."""
    return repo.refunds_with_status(session, status, limit)


def submit_refund(
    session: Session, client: WeChatPayClient, refund_id: int, *, notify_url: str | None
) -> DepositRefund:
    """Ask WeChat Pay (申请退款) for a pending refund, now; anything else is left alone.

    The refund row stays locked during the call, so the retry job (SKIP LOCKED) does not ask
    at the same time; even if it did, the same out_refund_no is the same refund at WeChat."""
    refund = repo.lock_refund(session, refund_id)
    if refund is None:
        raise UnknownRefund(f"no refund {refund_id}", refund_id=refund_id)
    if refund.status == RefundStatus.PENDING:
        request_refund(session, client, refund, notify_url=notify_url)
    return refund


def request_refund(
    session: Session,
    client: WeChatPayClient,
    refund: DepositRefund,
    *,
    notify_url: str | None,
    now: datetime | None = None,
) -> bool:
    """One refund request for a pending (locked) refund; True when WeChat accepted it.

    Any failure (an error code, no answer, an answer that does not verify or match) keeps
    the refund pending with `last_error` and a backed-off `next_attempt_at`: the retry job
    asks again with the same out_refund_no until WeChat takes it (SPEC §2, §3)."""
    payment = session.get(DepositPayment, refund.payment_id)
    if payment is None or payment.transaction_id is None:  # pragma: no cover - FK, held
        raise UnknownPayment(f"refund {refund.out_refund_no} has no paid payment")
    now = now or clock.now()
    refund.attempts += 1
    session.flush()
    try:
        answer = client.refund(
            out_refund_no=refund.out_refund_no,
            refund_fen=refund.amount_fen,
            total_fen=payment.amount_fen,
            transaction_id=payment.transaction_id,
            notify_url=notify_url,
            reason=REFUND_REASON,
        )
        with session.begin_nested():
            settle_refund(
                session, client.config, _answer_as_resource(client.config, answer), now=now
            )
    except (WeChatPayError, DomainError) as exc:
        _attempt_failed(refund, exc, now)
        session.flush()
        return False
    return True


def _attempt_failed(refund: DepositRefund, exc: Exception, now: datetime) -> None:
    refund.last_error = f"{type(exc).__name__}: {exc}"[:500]
    refund.next_attempt_at = now + rules.refund_retry_delay(refund.attempts)
    retryable = bool(getattr(exc, "retryable", False))
    log.log(
        logging.WARNING if retryable else logging.ERROR,
        "refund %s attempt %d failed (next at %s): %s",
        refund.out_refund_no,
        refund.attempts,
        refund.next_attempt_at.isoformat(),
        refund.last_error,
    )


def query_refund(
    session: Session, client: WeChatPayClient, refund: DepositRefund, now: datetime | None = None
) -> bool:
    """Ask WeChat Pay about a refund it accepted (查询单笔退款) and settle what it says, for
    the notification that never arrives. True when the refund's status changed."""
    now = now or clock.now()
    before = refund.status
    try:
        answer = client.query_refund(refund.out_refund_no)
        with session.begin_nested():
            settle_refund(
                session, client.config, _answer_as_resource(client.config, answer), now=now
            )
    except OrderNotFound as exc:
        # WeChat has no such refund: our request never reached it. Ask again, same number.
        refund.status = RefundStatus.PENDING
        refund.last_error = f"{type(exc).__name__}: {exc}"[:500]
        refund.next_attempt_at = now
        log.warning("refund %s unknown to WeChat Pay; requesting it again", refund.out_refund_no)
    except (WeChatPayError, DomainError) as exc:
        refund.last_error = f"{type(exc).__name__}: {exc}"[:500]
        refund.next_attempt_at = now + rules.refund_query_delay(now - refund.created_at)
        log.warning("refund %s query failed: %s", refund.out_refund_no, refund.last_error)
    session.flush()
    return refund.status != before


def _answer_as_resource(config: WeChatPayConfig, answer: Mapping[str, Any]) -> dict[str, Any]:
    """A refund request or query answer in the shape of a refund notification resource.

    The answer's signature is verified and it answers a request signed as our merchant, so
    its mchid is ours; its `status` is the notification's `refund_status`."""
    return {**answer, "mchid": config.mchid, "refund_status": answer.get("status")}


def handle_refund_notification(
    session: Session, config: WeChatPayConfig, notification: Notification
) -> DepositRefund | None:
    """A verified, decrypted refund notification (退款结果通知: REFUND.SUCCESS,
    REFUND.ABNORMAL, REFUND.CLOSED); other events are acknowledged and ignored."""
    if not notification.event_type.startswith("REFUND."):
        log.info("WeChat Pay refund notification %s ignored", notification.event_type)
        return None
    return settle_refund(session, config, notification.resource)


def settle_refund(
    session: Session,
    config: WeChatPayConfig,
    resource: Mapping[str, Any],
    *,
    now: datetime | None = None,
) -> DepositRefund:
    """Apply WeChat Pay's verified word about one of our refunds; money moves here only.

    `resource` is a decrypted refund notification resource, or a signature-checked refund
    answer (`_answer_as_resource`). It must name a refund we made, for our merchant, the
    payment and the amount we refunded; otherwise `RefundMismatch` and nothing changes.
    SUCCESS marks the refund succeeded and the payment refunded, posts `deposit_refunded`
    (idempotency key: the out_refund_no) and tells the rider, exactly once: the refund row
    is locked first and a replay finds it succeeded. ABNORMAL / CLOSED mark it abnormal for
    an operator (no money moves in the ledger); PROCESSING records WeChat's acceptance."""
    out_refund_no = str(resource.get("out_refund_no") or "")
    refund = repo.lock_refund_by_out_refund_no(session, out_refund_no)
    if refund is None:
        raise UnknownRefund(f"no deposit refund {out_refund_no!r}", out_refund_no=out_refund_no)
    payment = repo.lock_payment(session, refund.payment_id)
    if payment is None:  # pragma: no cover - the foreign key makes this impossible
        raise UnknownRefund(f"refund {out_refund_no} has no payment", out_refund_no=out_refund_no)
    status = resource.get("refund_status")
    amount = resource.get("amount")
    refunded = amount.get("refund") if isinstance(amount, Mapping) else None
    total = amount.get("total") if isinstance(amount, Mapping) else None
    refund_id = str(resource.get("refund_id") or "")
    problems = [
        what
        for what, bad in (
            (f"refund_status {status!r} is unknown", status not in rules.REFUND_STATES),
            ("mchid differs", resource.get("mchid") != config.mchid),
            ("out_trade_no differs", resource.get("out_trade_no") != payment.out_trade_no),
            ("transaction_id differs", resource.get("transaction_id") != payment.transaction_id),
            (
                f"amount.refund {refunded!r} is not {refund.amount_fen}",
                type(refunded) is not int or refunded != refund.amount_fen,
            ),
            (
                f"amount.total {total!r} is not {payment.amount_fen}",
                type(total) is not int or total != payment.amount_fen,
            ),
            ("refund_id missing", not refund_id),
            ("refund_id differs", bool(refund.refund_id) and refund_id != refund.refund_id),
        )
        if bad
    ]
    if problems:
        log.error("WeChat Pay refund %s not settled: %s", out_refund_no, problems)
        raise RefundMismatch(
            f"refund {out_refund_no} does not match: {'; '.join(problems)}",
            out_refund_no=out_refund_no,
        )
    now = now or clock.now()
    if refund.status == RefundStatus.SUCCEEDED:
        if status != rules.REFUND_SUCCESS:
            log.warning("refund %s succeeded; later %s ignored", out_refund_no, status)
        return refund  # a replayed notification, or the other side of a race
    refund.refund_id = refund_id
    if status == rules.REFUND_SUCCESS:
        _refund_succeeded(session, refund, payment, resource)
    elif status in rules.REFUND_FAILED_STATES:
        refund.status = RefundStatus.ABNORMAL
        refund.next_attempt_at = None
        refund.last_error = f"WeChat Pay refund status {status}"
        log.error(
            "refund %s of rider %s is %s at WeChat Pay: an operator must act",
            out_refund_no,
            refund.rider_id,
            status,
        )
    elif refund.status == RefundStatus.PENDING:  # PROCESSING: WeChat took the request
        refund.status = RefundStatus.PROCESSING
        refund.last_error = None
        refund.next_attempt_at = now + rules.REFUND_QUERY_AFTER
    elif refund.status == RefundStatus.PROCESSING:
        refund.next_attempt_at = now + rules.refund_query_delay(now - refund.created_at)
    session.flush()
    return refund


def _refund_succeeded(
    session: Session,
    refund: DepositRefund,
    payment: DepositPayment,
    resource: Mapping[str, Any],
) -> None:
    if payment.status != DepositStatus.REFUNDING:
        log.warning(
            "refund %s succeeded for payment %s in status %s",
            refund.out_refund_no,
            payment.out_trade_no,
            payment.status,
        )
    refund.status = RefundStatus.SUCCEEDED
    refund.succeeded_at = _wechat_time(resource.get("success_time"))
    refund.next_attempt_at = None
    refund.last_error = None
    payment.status = DepositStatus.REFUNDED
    session.flush()
    ledger.post(
        session,
        EntryKind.DEPOSIT_REFUNDED,
        rider_id=str(refund.rider_id),
        amount=Fen(refund.amount_fen),
        idempotency_key=refund.out_refund_no,
        reference=f"refund:{refund.out_refund_no}",
    )
    notifications.enqueue(
        session,
        refund.rider_id,
        notification_rules.DEPOSIT_REFUNDED,
        f"refund:{refund.out_refund_no}",
        {
            "amount_fen": refund.amount_fen,
            "out_refund_no": refund.out_refund_no,
            "refunded_at": refund.succeeded_at.isoformat(),
        },
    )
    log.info("refund %s succeeded: deposit %s refunded", refund.out_refund_no, payment.id)
