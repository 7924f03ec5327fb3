"""Scheduled delivery work. The caller (the scheduler) owns the transaction; on SQLite run it
in `db.transaction(immediate=True)`."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.config import Settings
from server.delivery import service

_DEFAULTS = Settings()


def settle_delivery(
    session: Session,
    now: datetime,
    *,
    grace: timedelta = timedelta(seconds=_DEFAULTS.ad_settlement_grace_s),
    lookback_days: int = _DEFAULTS.ad_settlement_lookback_days,
) -> int:
    """Settle kiosk-days whose local day ended more than `grace` ago: spots lost to an
    offline kiosk become make-goods or credits (service.settle). Returns the days settled.
    Idempotent and safe with several schedulers (row locks, skip locked, unique days).
    Schedule every `settings.ad_settlement_interval_s` with the settings' grace/lookback."""
    return service.settle(session, now, grace=grace, lookback_days=lookback_days)
