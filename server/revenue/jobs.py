"""Scheduled revenue-share work. Each run is one transaction, owned by the job runner."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from server.revenue import service


def issue_statements(
    session: Session, now: datetime, *, timezone: str | None = None, grace_s: int | None = None
) -> int:
    """State every partner's ended periods (hourly is plenty: a period is stated once its
    grace has passed). Idempotent; several schedulers at once are safe. Returns how many
    statements this run issued."""
    return len(service.issue_due_statements(session, now, timezone=timezone, grace_s=grace_s))
