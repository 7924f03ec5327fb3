"""HTTP only: /api/v1/kiosks."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError

from firmware_protocol.messages import CmdOp
from server.accounts import service as accounts
from server.accounts.router import OperatorDep
from server.core.errors import Unavailable
from server.core.http import SessionDep, services
from server.kiosks import rules, service
from server.kiosks.repository import KioskFilters
from server.kiosks.schemas import (
    AdScreenIn,
    AdScreenOut,
    CommandIn,
    CommandOut,
    KioskCreate,
    KioskCreated,
    KioskOut,
    KioskPage,
    KioskSummary,
    NearbyItem,
    NearbyOut,
    PasswordRotated,
)

router = APIRouter(prefix="/api/v1/kiosks", tags=["kiosks"])
KioskId = Annotated[str, Path(pattern=rules.KIOSK_ID_PATTERN, examples=["K000123"])]


def _bbox(value: str | None) -> rules.BoundingBox | None:
    if value is None:
        return None
    try:
        min_lon, min_lat, max_lon, max_lat = (float(p) for p in value.split(","))
    except ValueError:
        min_lon = min_lat = max_lon = max_lat = float("nan")
    ok = -180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90
    if not ok:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "bbox"),
                    "msg": "bbox must be min_lon,min_lat,max_lon,max_lat with min <= max",
                    "type": "value_error",
                }
            ]
        )
    return rules.BoundingBox(min_lat=min_lat, min_lon=min_lon, max_lat=max_lat, max_lon=max_lon)


def _venue(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return rules.resolve_venue_type(value)
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("query", "venue_type"), "msg": str(exc), "type": "value_error"}]
        ) from exc


def _credentials_changed(request: Request, tasks: BackgroundTasks) -> None:
    sync = services(request).broker_sync
    if sync is not None:
        tasks.add_task(sync)  # runs after the response, i.e. after the commit


@router.get("", summary="List kiosks with live availability")
def list_kiosks(
    session: SessionDep,
    partner_id: Annotated[int | None, Query(gt=0)] = None,
    venue_type: Annotated[str | None, Query(description="OpenOOH id or key")] = None,
    online: bool | None = None,
    has_umbrellas: bool | None = None,
    has_free_slots: bool | None = None,
    bbox: Annotated[
        str | None, Query(description="min_lon,min_lat,max_lon,max_lat", examples=[None])
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> KioskPage:
    filters = KioskFilters(
        partner_id=partner_id,
        venue_type=_venue(venue_type),
        online=online,
        has_umbrellas=has_umbrellas,
        has_free_slots=has_free_slots,
        bbox=_bbox(bbox),
    )
    rows, total = service.list_kiosks(session, filters, limit=limit, offset=offset)
    return KioskPage(
        items=[KioskSummary.from_row(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/nearby", summary="Nearest online kiosks with an umbrella or a free slot")
def nearby(
    session: SessionDep,
    lat: Annotated[float, Query(ge=-90, le=90)],
    lon: Annotated[float, Query(ge=-180, le=180)],
    radius_m: Annotated[float, Query(gt=0, le=50_000)] = 1_000,
    need: Literal["umbrella", "free_slot"] = "umbrella",
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> NearbyOut:
    found = service.nearby(session, lat=lat, lon=lon, radius_m=radius_m, need=need, limit=limit)
    return NearbyOut(
        lat=lat,
        lon=lon,
        radius_m=radius_m,
        need=need,
        items=[NearbyItem.from_nearby(n) for n in found],
    )


@router.get("/{kiosk_id}", summary="One kiosk: registry facts, live state and every slot")
def get_kiosk(kiosk_id: KioskId, session: SessionDep) -> KioskOut:
    return KioskOut.from_detail(service.get_kiosk(session, kiosk_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Register a kiosk; the response carries its MQTT password, shown once",
)
def register_kiosk(
    body: KioskCreate,
    session: SessionDep,
    request: Request,
    tasks: BackgroundTasks,
    operator: OperatorDep,
) -> KioskCreated:
    settings = services(request).settings
    creds = service.register_kiosk(
        session,
        partner_id=body.partner_id,
        kiosk_id=body.id,
        name=body.name,
        lat=body.lat,
        lon=body.lon,
        address=body.address,
        venue_type=body.venue_type,
        timezone=body.timezone,
        slot_count=body.slot_count,
        loop_seconds=body.loop_seconds,
        spot_seconds=body.spot_seconds,
        open_hour=body.open_hour,
        close_hour=body.close_hour,
        cloud_usernames=service.cloud_users(settings),
    )
    detail = service.get_kiosk(session, creds.kiosk_id)
    accounts.record_change(
        session,
        operator,
        "kiosk.register",
        f"kiosk:{creds.kiosk_id}",
        f"partner:{body.partner_id}, name {body.name!r}, at {body.lat},{body.lon}, "
        f"{detail.row.kiosk.slot_count} slots",
    )
    _credentials_changed(request, tasks)
    return KioskCreated(
        **KioskSummary.from_row(detail.row).model_dump(),
        mqtt_username=creds.kiosk_id,
        mqtt_password=creds.password,
    )


@router.patch(
    "/{kiosk_id}/ad-screen",
    summary="Change the ad screen's loop (loop_seconds, spot_seconds) and opening hours",
    responses={409: {"description": "a future hour already sold more than the new loop holds"}},
)
def set_ad_screen(
    kiosk_id: KioskId, body: AdScreenIn, session: SessionDep, operator: OperatorDep
) -> AdScreenOut:
    before = AdScreenOut.of(service.get_kiosk(session, kiosk_id).row.kiosk)
    kiosk = service.set_ad_screen(
        session,
        kiosk_id,
        loop_seconds=body.loop_seconds,
        spot_seconds=body.spot_seconds,
        open_hour=body.open_hour,
        close_hour=body.close_hour,
    )
    after = AdScreenOut.of(kiosk)
    accounts.record_change(
        session,
        operator,
        "kiosk.ad_screen",
        f"kiosk:{kiosk_id}",
        f"loop {before.loop_seconds}/{before.spot_seconds} s -> "
        f"{after.loop_seconds}/{after.spot_seconds} s, hours {before.open_hour}-"
        f"{before.close_hour} -> {after.open_hour}-{after.close_hour}",
    )
    return after


@router.post(
    "/{kiosk_id}/password",
    summary="Rotate a kiosk's MQTT password; the new one is shown once",
)
def rotate_password(
    kiosk_id: KioskId,
    session: SessionDep,
    request: Request,
    tasks: BackgroundTasks,
    operator: OperatorDep,
) -> PasswordRotated:
    creds = service.rotate_password(session, kiosk_id)
    accounts.record_change(
        session, operator, "kiosk.password_rotate", f"kiosk:{kiosk_id}", "MQTT password rotated"
    )
    _credentials_changed(request, tasks)
    return PasswordRotated(kiosk_id=creds.kiosk_id, mqtt_password=creds.password)


@router.post(
    "/{kiosk_id}/commands",
    summary="Send a ping or a maintenance unlock to a kiosk and wait for its answer",
    responses={
        404: {"description": "no such kiosk"},
        409: {"description": "the kiosk is offline"},
        504: {"description": "the kiosk did not answer in time"},
    },
)
def send_command(
    kiosk_id: KioskId, body: CommandIn, request: Request, operator: OperatorDep
) -> CommandOut:
    # Not a SessionDep endpoint: the command channel commits its own record before
    # publishing (the answer may arrive at another process within milliseconds).
    svc = services(request)
    if svc.commands is None:
        raise Unavailable("no MQTT command channel in this process")
    result = service.command(
        svc.db,
        svc.commands,
        kiosk_id,
        CmdOp(body.op),
        body.slot,
        timeout_s=body.timeout_s,
        actor=operator,
    )
    return CommandOut(
        command_id=result.cmd_id,
        kiosk_id=kiosk_id,
        status=result.status.value,
        slot=result.slot,
        tag=None if result.tag is None else result.tag.hex().upper(),
    )
