"""Scheduled work on kiosk state. The caller (the scheduler) owns the transaction."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import event
from sqlalchemy.orm import Session

from server.core.clock import to_ms
from server.core.shared_state import Presence, SharedState
from server.kiosk_state import repository as repo

log = logging.getLogger(__name__)


def mark_silent_kiosks_offline(
    session: Session,
    now: datetime,
    timeout_s: int,
    *,
    shared_state: SharedState | None = None,
) -> int:
    """Kiosks online but silent for `timeout_s` become offline; returns how many.

    A kiosk whose modem lost coverage may never get a Last Will delivered quickly (the broker
    waits 1.5 keep-alives, and a half-open TCP connection can last much longer), so silence
    itself ends presence. `conn` is left alone: the kiosk's next Online orders after it, and
    a live message from it marks it online again (rules.is_live).

    Idempotent and safe to run from several schedulers at once (rows locked, skip locked).
    With `shared_state`, the presence cache is updated after the caller commits.
    """
    cutoff = now - timedelta(seconds=timeout_s)
    states = repo.lock_silent_online_states(session, cutoff)
    changed: list[Presence] = []
    for s in states:
        s.online = False
        s.online_changed_at = now
        last_seen = None if s.last_seen_at is None else to_ms(s.last_seen_at)
        changed.append(Presence(s.kiosk_id, False, s.conn, last_seen))
        log.info("kiosk %s offline (silent for more than %d s)", s.kiosk_id, timeout_s)
    session.flush()
    if changed and shared_state is not None:
        cache = shared_state

        @event.listens_for(session, "after_commit", once=True)
        def _update_cache(_session: Session) -> None:
            try:
                cache.set_presence_many(changed)
            except Exception:  # the cache is a hint; the database has the truth
                log.warning("presence cache update failed", exc_info=True)

    return len(changed)


def prune_receipts(session: Session, now: datetime, keep_days: int) -> int:
    """Drop duplicate-filter receipts older than `keep_days` (by receive time).

    A receipt only has to outlive every copy of its message: the kiosk's offline buffer
    (2,000 messages, days at most) and broker redelivery. Kept far longer than that.
    """
    return repo.delete_receipts_before(session, now - timedelta(days=keep_days))
