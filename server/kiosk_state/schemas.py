"""Pydantic I/O of the uplink statistics API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Rejection(BaseModel):
    topic: str
    reason: str
    detail: str
    received_at: datetime


class UplinkStats(BaseModel):
    counters: dict[str, int] = Field(
        description="Counters of every bridge process since the shared state started: "
        "bridge.<bridge id>.received / applied / duplicates / rejected.<reason>"
    )
    rejected_last_24h: dict[str, int] = Field(description="Rejected uplinks by reason")
    recent_rejections: list[Rejection]
