"""Scheduled rental work (SPEC §2 Free window, Automatic forfeiture). Each call is one unit
of work on a bounded chunk; the caller (the scheduler) owns the transaction and calls again
while a chunk comes back full.

Safe with several scheduler processes: rows are claimed with FOR UPDATE SKIP LOCKED and
changed only from the state the job expects, and every money movement has its own ledger key
(`forfeit:rental:<id>`), so a rental is forfeited exactly once whoever runs the sweep.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from sqlalchemy.orm import Session

from server.notifications import repository as outbox
from server.notifications import rules as notes
from server.rentals import repository as repo
from server.rentals import rules, service

log = logging.getLogger(__name__)

#: Rentals per unit of work: big enough for set-wise statements to pay off, small enough
#: that one transaction stays short.
CHUNK = 5000


def forfeit_overdue(session: Session, now: datetime, *, limit: int = CHUNK) -> int:
    """Forfeit the deposit of up to `limit` active rentals whose deadline has passed; returns
    how many it claimed (all forfeited unless the ledger refused one, which is logged).
    Each: rental `forfeited`, deposit `forfeited`, umbrella the rider's, ledger
    `deposit_forfeited`, and the rider told, all in this transaction."""
    due = repo.claim_overdue(session, now, limit)
    if not due:
        return 0
    service.forfeit(session, due, now)
    # The claimed count, not the posted one: a rental the ledger refused must not make the
    # caller (`run_in_chunks`) stop after one chunk on every run.
    return len(due)


def send_reminders(session: Session, now: datetime, *, limit: int = CHUNK) -> int:
    """Queue the day-5 and day-6 reminders that are due (SPEC §2); returns how many. A rental
    that reached day 6 before any reminder went out gets only the day-6 one."""
    queued = 0
    for stage, kind in ((2, notes.DEADLINE_DAY6), (1, notes.DEADLINE_DAY5)):
        after = rules.REMINDER_AFTER[stage - 1]
        due = repo.claim_reminders(
            session, stage=stage, deadline_by=now + (rules.FREE_WINDOW - after), limit=limit
        )
        outbox.insert_pending(
            session,
            [
                {
                    "rider_id": r.rider_id,
                    "kind": kind,
                    "dedup_key": notes.dedup_key(kind, f"rental:{r.id}"),
                    "payload": json.dumps(
                        {
                            "rental_id": r.id,
                            "deadline_at": _iso(r.deadline_at),
                            "amount_fen": r.deposit_fen,
                        },
                        sort_keys=True,
                    ),
                    "now": now,
                }
                for r in due
            ],
        )
        queued += len(due)
    return queued


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
