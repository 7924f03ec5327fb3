"""Scheduled kiosk-state jobs, run the way the scheduler runs them (one transaction each)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import MemorySharedState
from server.kiosk_state import jobs
from server.models import UplinkReceipt
from server.scheduler.runner import build_scheduler


def test_receipts_older_than_the_retention_are_pruned_and_newer_ones_kept(db: Database) -> None:
    now = clock.now()
    with db.transaction() as s:
        for seq, age_days in ((1, 120), (2, 91), (3, 89), (4, 0)):
            at = now - timedelta(days=age_days)
            s.add(UplinkReceipt(kiosk_id="K1", seq=seq, msg_type=2, kiosk_time=at, received_at=at))

    with db.transaction() as s:
        pruned = jobs.prune_receipts(s, now, keep_days=90)

    with db.transaction() as s:
        left = sorted(s.scalars(select(UplinkReceipt.seq)))
        assert s.scalar(select(func.count()).select_from(UplinkReceipt)) == 2
    assert pruned == 2
    assert left == [3, 4]


def test_scheduler_runs_presence_rentals_and_receipt_jobs() -> None:
    settings = Settings(database_url="sqlite:///:memory:")
    database = Database(settings.db_url)
    try:
        scheduler = build_scheduler(settings, database, MemorySharedState())
        assert {j.id for j in scheduler.get_jobs()} >= {
            "presence_timeout",
            "prune_receipts",
            "forfeit_overdue",
            "reminders",
        }
    finally:
        database.dispose()
