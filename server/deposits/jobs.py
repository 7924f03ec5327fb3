"""Scheduled deposit work. The caller (the scheduler) owns the transaction."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.core.errors import DomainError
from server.deposits import repository as repo
from server.deposits import service
from server.payments.wechatpay import WeChatPayClient, WeChatPayError

log = logging.getLogger(__name__)


def reconcile_pending_deposits(
    session: Session, client: WeChatPayClient, now: datetime, older_than: timedelta
) -> int:
    """Settle the pending payments older than `older_than` that WeChat Pay says are paid,
    through the same `settle_paid_order` as the notification; returns how many it settled.

    For the notification that never arrives (our endpoint down through all of WeChat's
    retries, a lost network path). Rows being settled elsewhere right now are skipped; each
    payment runs in its own savepoint, so one WeChat error or mismatch does not undo the
    others. Unpaid orders stay pending (closing expired ones comes with the refund work)."""
    settled = 0
    for payment in repo.lock_pending_older_than(session, now - older_than):
        try:
            with session.begin_nested():
                if service.settle_from_query(session, client, payment):
                    settled += 1
        except (WeChatPayError, DomainError) as exc:
            log.warning("reconciling deposit %s failed: %s", payment.out_trade_no, exc)
    return settled
