"""Scheduled billing work. The caller (the scheduler) owns the transaction."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from server.billing import repository as repo
from server.billing import rules, service

log = logging.getLogger(__name__)


def issue_monthly_statements(
    session: Session, now: datetime, *, billing_timezone: str = rules.DEFAULT_BILLING_TIMEZONE
) -> int:
    """Issue the previous calendar month's statement (SPEC §4: on the 1st, due on the 20th)
    to every monthly advertiser that has none yet and was billed something in that month;
    returns how many it issued.

    Run it often (hourly): on any day of a month it issues what the 1st should have, so a
    run that was missed catches up, and once every statement exists a run is one query.
    Safe with several scheduler processes: the statement's partial UNIQUE index decides,
    and the loser's savepoint is rolled back (service._issue). On SQLite, run it in
    `db.transaction(immediate=True)`."""
    dates = rules.due_statement(now, billing_timezone)
    issued = 0
    for advertiser_id in repo.monthly_advertisers_without_statement(session, dates.period_start):
        invoice = service.issue_statement(session, advertiser_id, dates, now=now)
        if invoice is not None:
            issued += 1
            log.info(
                "statement %s issued to advertiser %s for %s: %s fen",
                invoice.id,
                advertiser_id,
                dates.period_start.strftime("%Y-%m"),
                invoice.total_fen,
            )
    return issued
