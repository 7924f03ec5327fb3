"""Scheduled alert work (issue 5): run every 30-60 s (settings.alert_evaluate_interval_s).

Idempotent and safe with several schedulers: an alert opens through an insert that skips
what the partial unique index on open alerts already holds, and closes through an update
from open only."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from server.alerts import rules, service

log = logging.getLogger(__name__)


def evaluate(session: Session, now: datetime, thresholds: rules.Thresholds | None = None) -> int:
    """Open the alerts whose condition holds at `now`, close those that cleared; returns how
    many alerts it opened plus closed. The caller owns the transaction.
    `thresholds`: `alerts.service.thresholds_of(settings)`; the defaults match the settings'."""
    done = service.evaluate(session, now, thresholds or rules.Thresholds())
    if done.opened or done.closed:
        log.info("alerts: %d opened, %d closed", done.opened, done.closed)
    return done.opened + done.closed
