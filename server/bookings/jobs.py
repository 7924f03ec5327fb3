"""Scheduled booking work: holds that ran out give their spots back (SPEC §4 Booking).

Safe with several scheduler processes: held bookings are claimed with FOR UPDATE SKIP
LOCKED and changed only from `held`, so a hold expires once whoever runs the sweep; a
booking an advertiser is confirming at that moment is skipped and settled by the confirm.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from server.bookings import repository as repo
from server.bookings import service

#: Bookings per unit of work; the caller runs it again while a chunk comes back full.
CHUNK = 500


def expire_holds(session: Session, now: datetime, *, limit: int = CHUNK) -> int:
    """Expire up to `limit` holds whose `held_until` has passed, returning their spots;
    returns how many expired. Idempotent: a second run finds nothing to do."""
    return service.expire(session, repo.claim_expired_holds(session, now, limit), now)
