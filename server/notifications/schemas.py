"""Pydantic I/O of the rider's notification list."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel


class NotificationOut(BaseModel):
    id: int
    #: rental_started, deadline_day5, deposit_refunded... (server/notifications/rules.py)
    kind: str
    #: What the message says: amounts in fen, times in UTC ISO 8601.
    payload: dict[str, Any]
    #: `pending` until WeChat accepted it; `undeliverable` when WeChat refused it for good
    #: (the rider did not subscribe to that message) or it became pointless.
    status: Literal["pending", "sent", "undeliverable"]
    created_at: datetime
    sent_at: datetime | None


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    total: int
    limit: int
    offset: int
