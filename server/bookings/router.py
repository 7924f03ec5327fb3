"""HTTP only: the bookings endpoints (advertiser-side under /api/v1/ads, operator-side under
/api/v1/ops)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, status

from server.accounts.router import AdvertiserDep, OperatorDep, PrincipalDep
from server.accounts.service import Forbidden
from server.bookings import service
from server.bookings.schemas import (
    AvailabilityIn,
    AvailabilityOut,
    BookingCreate,
    BookingOut,
    BookingPage,
    HoldIn,
    VenuePriceIn,
    VenuePriceOut,
)
from server.core.http import SessionDep
from server.models import BookingStatus

router = APIRouter(prefix="/api/v1", tags=["bookings"])

BookingId = Annotated[int, Path(gt=0)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such booking (or another advertiser's)"}
}


@router.post(
    "/ads/availability",
    summary="Per kiosk and local hour: capacity, sold, free, and which bookings hold the rest",
    response_description="Arrays per kiosk over the hours of its calendar",
)
def availability(
    body: AvailabilityIn, principal: PrincipalDep, session: SessionDep
) -> AvailabilityOut:
    """Advertisers see their own bookings by id and other advertisers' only as counts
    (`held_by_others`); operators see every booking."""
    if principal.is_operator:
        advertiser_id = None
    elif principal.advertiser_id is not None:
        advertiser_id = principal.advertiser_id
    else:
        raise Forbidden("advertisers and operators only")
    result = service.availability(
        session,
        advertiser_id,
        body.selection.to_domain(),
        body.start_date,
        body.end_date,
        body.dayparts,
    )
    return AvailabilityOut.from_domain(result)


@router.get("/ads/prices", summary="Price per spot per kiosk per day, by venue type")
def list_prices(session: SessionDep, _: PrincipalDep) -> list[VenuePriceOut]:
    return [VenuePriceOut.of(v, fen) for v, fen in service.prices(session).items()]


@router.put("/ops/ads/prices/{venue_type}", summary="Set a venue type's price (operators)")
def set_price(
    venue_type: Annotated[str, Path(max_length=32)],
    body: VenuePriceIn,
    session: SessionDep,
    operator: OperatorDep,
) -> list[VenuePriceOut]:
    updated = service.set_price(session, venue_type, body.fen_per_spot_day, actor=operator)
    return [VenuePriceOut.of(v, fen) for v, fen in updated.items()]


@router.post(
    "/ads/bookings",
    status_code=status.HTTP_201_CREATED,
    summary="Create a draft booking; the answer is its quote (price per kiosk and total)",
    responses={404: {"description": "unknown kiosks or creatives"}},
)
def create_booking(
    body: BookingCreate, advertiser: AdvertiserDep, session: SessionDep
) -> BookingOut:
    assert advertiser.advertiser_id is not None  # AdvertiserDep guarantees it
    view = service.create_booking(session, advertiser.advertiser_id, body.to_domain())
    return BookingOut.from_view(view)


@router.get("/ads/bookings", summary="The advertiser's bookings, newest first")
def list_bookings(
    advertiser: AdvertiserDep,
    session: SessionDep,
    status_: Annotated[BookingStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> BookingPage:
    views, total = service.list_bookings(
        session, advertiser.advertiser_id, status=status_, limit=limit, offset=offset
    )
    return BookingPage(
        items=[BookingOut.from_view(v) for v in views], total=total, limit=limit, offset=offset
    )


@router.get(
    "/ads/bookings/{booking_id}", summary="One of the advertiser's bookings", responses=_NOT_FOUND
)
def get_booking(
    booking_id: BookingId, advertiser: AdvertiserDep, session: SessionDep
) -> BookingOut:
    return BookingOut.from_view(service.get_booking(session, advertiser.advertiser_id, booking_id))


@router.post(
    "/ads/bookings/{booking_id}/hold",
    summary="Reserve the spots for a while (default 30 minutes); a held booking stays as it is",
    responses={**_NOT_FOUND, 409: {"description": "sold_out (details name the full hours)"}},
)
def hold(
    booking_id: BookingId,
    advertiser: AdvertiserDep,
    session: SessionDep,
    body: Annotated[HoldIn | None, Body()] = None,
) -> BookingOut:
    assert advertiser.advertiser_id is not None
    minutes = (body or HoldIn()).minutes
    view = service.hold(session, advertiser.advertiser_id, booking_id, minutes)
    return BookingOut.from_view(view)


@router.post(
    "/ads/bookings/{booking_id}/confirm",
    summary="Confirm the booking (reserving first unless held); confirming again is a no-op",
    responses={**_NOT_FOUND, 409: {"description": "sold_out (details name the full hours)"}},
)
def confirm(booking_id: BookingId, advertiser: AdvertiserDep, session: SessionDep) -> BookingOut:
    assert advertiser.advertiser_id is not None
    view, _ = service.confirm(session, advertiser.advertiser_id, booking_id)
    return BookingOut.from_view(view)


@router.post(
    "/ads/bookings/{booking_id}/release",
    summary="Give a draft, held or expired booking's spots back",
    responses={**_NOT_FOUND, 409: {"description": "the booking is confirmed"}},
)
def release(booking_id: BookingId, advertiser: AdvertiserDep, session: SessionDep) -> BookingOut:
    assert advertiser.advertiser_id is not None
    return BookingOut.from_view(service.release(session, advertiser.advertiser_id, booking_id))


@router.get("/ops/ads/bookings", summary="Every advertiser's bookings (operators)")
def ops_list_bookings(
    _: OperatorDep,
    session: SessionDep,
    status_: Annotated[BookingStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> BookingPage:
    views, total = service.list_bookings(session, None, status=status_, limit=limit, offset=offset)
    return BookingPage(
        items=[BookingOut.from_view(v) for v in views], total=total, limit=limit, offset=offset
    )


@router.get(
    "/ops/ads/bookings/{booking_id}", summary="Any booking (operators)", responses=_NOT_FOUND
)
def ops_get_booking(booking_id: BookingId, _: OperatorDep, session: SessionDep) -> BookingOut:
    return BookingOut.from_view(service.get_booking(session, None, booking_id))
