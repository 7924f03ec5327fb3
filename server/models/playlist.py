"""Compiled playlists, one row per version pushed to a kiosk (SPEC §4 Playlists,
firmware_protocol SPEC §4.6).

`body` is the compiled playlist as JSON, with the provenance of every spot, so "why does
this kiosk play this now" is answered from what was actually sent:

    {"kiosk_id": ..., "timezone": ..., "starts_ms": ..., "ends_ms": ..., "spot_ms": 10000,
     "catalog": [{"code": "b4-c17", "rule": "booked", "booking_id": 4, "advertiser_id": 2,
                  "creative_id": 17, "daypart": "07-10", "note": null, "media_url": ...,
                  "sha256": ...}, ...],
     "blocks": [{"start_ms": ..., "end_ms": ..., "local_start": "2026-11-27T07:00+08:00",
                 "spots": [0, 3, 1, ...]}]}     (indices into the catalog)

(server/playlists/rules.py `to_body` / `from_body`.)

`rule` is `booked` (a booking's spot), `make_good` (owed for spots lost offline) or
`house` (unsold spot: network announcements and tips).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base


class PlaylistVersion(Base):
    __tablename__ = "playlist_versions"

    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    #: What the playlist covers (UTC), at least the next 48 hours when compiled.
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    #: SHA-256 of the blocks as sent; an unchanged compile makes no new version.
    content_hash: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    spot_count: Mapped[int] = mapped_column(Integer)
    #: The last compile that produced this content (an unchanged compile moves it forward:
    #: the compiler compares it with bookings' `updated_at`, server/playlists/jobs.py).
    compiled_at: Mapped[datetime]
    #: The downlink's cmd id; the kiosk's CmdResult `ok` for it sets `acked_at`.
    cmd_id: Mapped[str] = mapped_column(String(64), unique=True)
    published_at: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]
    #: The kiosk's answer: "ok", "rejected", ...
    ack_result: Mapped[str | None] = mapped_column(String(16))
