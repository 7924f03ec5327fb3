"""HTTP only: the operators' playlist views under /api/v1/ops, and the house content kiosks
download (public, like any creative's media)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from server.accounts.router import OperatorDep
from server.core.clock import clock
from server.core.errors import DomainError
from server.core.http import SessionDep
from server.playlists import service
from server.playlists.schemas import (
    BlockOut,
    KioskPlaylistsOut,
    PlayingOut,
    SpotOut,
    VersionOut,
)

router = APIRouter(prefix="/api/v1", tags=["playlists"])


class NaiveInstant(DomainError):
    code = "naive_datetime"


@router.get(
    "/ops/kiosks/{kiosk_id}/playlists",
    summary="A kiosk's playlist versions: compiled, published, acknowledged",
    responses={404: {"description": "unknown_kiosk"}},
)
def kiosk_playlists(
    kiosk_id: str,
    session: SessionDep,
    _: OperatorDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> KioskPlaylistsOut:
    found = service.list_versions(session, kiosk_id, limit)
    return KioskPlaylistsOut(
        kiosk_id=found.kiosk_id,
        reported_version=found.reported_version,
        versions=[VersionOut.model_validate(v) for v in found.versions],
    )


@router.get(
    "/ops/kiosks/{kiosk_id}/playing",
    summary="Why does this kiosk play this now: the spot on screen and the rule behind it",
    responses={
        400: {"description": "naive_datetime: `at` needs a UTC offset"},
        404: {"description": "unknown_kiosk"},
    },
)
def kiosk_playing(
    kiosk_id: str,
    session: SessionDep,
    _: OperatorDep,
    at: Annotated[datetime | None, Query(description="ISO 8601 with offset; default now")] = None,
) -> PlayingOut:
    if at is not None and at.tzinfo is None:
        raise NaiveInstant("`at` needs a UTC offset, e.g. 2026-11-26T08:00:00+08:00", at=str(at))
    p = service.playing(session, kiosk_id, clock.now() if at is None else at)
    v, s = p.version, p.screen
    return PlayingOut(
        kiosk_id=p.kiosk_id,
        at=p.at,
        version=None if v is None else v.version,
        source=p.source,
        reported_version=p.reported_version,
        latest_version=p.latest_version,
        acked_at=None if v is None else v.acked_at,
        block=None
        if s is None
        else BlockOut(
            start=s.block.start,
            end=s.block.end,
            local_start=s.block.local_start,
            spot_count=len(s.block.spots),
        ),
        spot=None
        if s is None
        else SpotOut(
            code=s.spot.code,
            rule=s.spot.rule,
            index=s.index,
            starts_at=s.starts_at,
            ends_at=s.ends_at,
            media_url=s.spot.media.url,
            sha256=s.spot.media.sha256,
            creative_id=s.spot.creative_id,
            creative_title=p.creative_title,
            creative_status=p.creative_status,
            booking_id=s.spot.booking_id,
            booking_name=p.booking_name,
            booking_status=p.booking_status,
            advertiser_id=s.spot.advertiser_id,
            advertiser_name=p.advertiser_name,
            daypart=s.spot.daypart,
            note=s.spot.note,
        ),
        explanation=p.explanation,
    )


@router.get(
    "/house/{file_name}",
    summary="House content (network announcements, tips) for unsold spots",
    response_class=FileResponse,
    responses={404: {"description": "not_found"}},
)
def house_content(file_name: str) -> FileResponse:
    return FileResponse(service.house_file(file_name), media_type="image/svg+xml")
