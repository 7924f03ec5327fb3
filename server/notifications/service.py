"""The notification outbox: `enqueue` in the transaction of the event it tells about, and
the rider's view of it. Flushes, never commits. The sender is `jobs.send_pending`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from server.core.clock import clock
from server.models import Notification
from server.notifications import repository, rules


def enqueue(
    session: Session, rider_id: int, kind: str, subject: str, payload: Mapping[str, object]
) -> None:
    """Queue one notification; the same (kind, subject) twice is queued once."""
    now = clock.now()
    repository.insert_pending(
        session,
        [
            {
                "rider_id": rider_id,
                "kind": kind,
                "dedup_key": rules.dedup_key(kind, subject),
                "payload": json.dumps(payload, sort_keys=True, ensure_ascii=False),
                "now": now,
            }
        ],
    )


def list_for_rider(
    session: Session, rider_id: int, *, limit: int, offset: int
) -> tuple[list[Notification], int]:
    """The rider's own notifications, newest first, and their total."""
    return repository.for_rider(session, rider_id, limit=limit, offset=offset)


def payload_of(notification: Notification) -> dict[str, Any]:
    """The stored payload as an object (an unreadable one shows as empty)."""
    try:
        value = json.loads(notification.payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
