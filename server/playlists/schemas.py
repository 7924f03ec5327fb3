"""Pydantic I/O of the playlist endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class VersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    starts_at: datetime
    ends_at: datetime
    content_hash: str
    spot_count: int
    #: The last compile that produced this content.
    compiled_at: datetime
    cmd_id: str
    published_at: datetime | None
    acked_at: datetime | None
    ack_result: str | None


class KioskPlaylistsOut(BaseModel):
    kiosk_id: str
    #: The version the kiosk's latest heartbeat says it plays (`plv`).
    reported_version: int | None
    #: Newest first.
    versions: list[VersionOut]


class BlockOut(BaseModel):
    start: datetime
    end: datetime
    #: Local wall time the block starts at (the kiosk's time zone).
    local_start: str
    spot_count: int


class SpotOut(BaseModel):
    #: The spot code the kiosk plays and reports (`b<booking>-c<creative>`, `house-<name>`).
    code: str
    #: booked | make_good | house
    rule: str
    #: Position in the block's spot list, and when this showing started and ends.
    index: int
    starts_at: datetime
    ends_at: datetime
    media_url: str
    sha256: str
    creative_id: int | None
    creative_title: str | None
    creative_status: str | None
    booking_id: int | None
    booking_name: str | None
    booking_status: str | None
    advertiser_id: int | None
    advertiser_name: str | None
    daypart: str | None
    #: Why a booking's spot shows house content, e.g. "creative not approved".
    note: str | None


class PlayingOut(BaseModel):
    kiosk_id: str
    at: datetime
    #: The version the answer is read from and why that one: "reported" (heartbeat `plv`),
    #: "acknowledged" (the kiosk's latest `ok`), "latest" (sent, not answered yet); null
    #: when nothing was compiled.
    version: int | None
    source: str | None
    reported_version: int | None
    latest_version: int | None
    acked_at: datetime | None
    block: BlockOut | None
    spot: SpotOut | None
    explanation: str
