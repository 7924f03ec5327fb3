"""Scheduled deposit work. The caller (the scheduler) owns the transaction."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.core.errors import DomainError
from server.deposits import repository as repo
from server.deposits import service
from server.models import DepositStatus, RefundStatus
from server.payments.wechatpay import WeChatPayClient, WeChatPayError

log = logging.getLogger(__name__)


def reconcile_pending_deposits(
    session: Session, client: WeChatPayClient, now: datetime, older_than: timedelta
) -> int:
    """Settle the pending payments older than `older_than` that WeChat Pay says are paid,
    through the same `settle_paid_order` as the notification; returns how many it settled.
    Orders still unpaid past `rules.PAYMENT_WINDOW` are closed at WeChat Pay and marked
    `closed` (`service.reconcile_payment`), so abandoned payment sheets do not pile up and
    are not queried forever.

    For the notification that never arrives (our endpoint down through all of WeChat's
    retries, a lost network path). Rows being settled elsewhere right now are skipped; each
    payment runs in its own savepoint, so one WeChat error or mismatch does not undo the
    others."""
    settled = closed = 0
    for payment in repo.lock_pending_older_than(session, now - older_than):
        try:
            with session.begin_nested():
                status = service.reconcile_payment(session, client, payment, now)
        except (WeChatPayError, DomainError) as exc:
            log.warning("reconciling deposit %s failed: %s", payment.out_trade_no, exc)
            continue
        settled += status is DepositStatus.HELD
        closed += status is DepositStatus.CLOSED
    if closed:
        log.info("closed %d deposit order(s) that expired unpaid", closed)
    return settled


def retry_refunds(
    session: Session,
    client: WeChatPayClient,
    now: datetime,
    *,
    notify_url: str | None = None,
    limit: int = 100,
) -> int:
    """Move withdrawn deposits' refunds forward (SPEC §2: retried until it succeeds);
    returns how many refunds WeChat Pay accepted or settled in this run.

    - `pending` refunds whose `next_attempt_at` has come (a failed or never-made request)
      are requested again with the same out_refund_no, which WeChat treats as the same
      refund, so money moves once however often this runs;
    - `processing` refunds whose `next_attempt_at` has come (a minute after WeChat accepted
      them, then backing off with their age) are queried, and settled through
      `service.settle_refund` when WeChat says SUCCESS: the notification that never arrives.

    Rows another run or request is working on are skipped (SKIP LOCKED on PostgreSQL); each
    refund runs in its own savepoint, so one failure does not undo the others. `abnormal`
    refunds are left to operators. On SQLite, run it in `db.transaction(immediate=True)`."""
    progressed = 0
    for refund in repo.lock_refunds_due(session, RefundStatus.PENDING, now, limit):
        try:
            with session.begin_nested():
                if service.request_refund(session, client, refund, notify_url=notify_url, now=now):
                    progressed += 1
        except (WeChatPayError, DomainError) as exc:
            log.warning("retrying refund %s failed: %s", refund.out_refund_no, exc)
    for refund in repo.lock_refunds_due(session, RefundStatus.PROCESSING, now, limit):
        try:
            with session.begin_nested():
                service.query_refund(session, client, refund, now)
                if refund.status in (RefundStatus.SUCCEEDED, RefundStatus.ABNORMAL):
                    progressed += 1
        except (WeChatPayError, DomainError) as exc:
            log.warning("querying refund %s failed: %s", refund.out_refund_no, exc)
    return progressed
