"""HTTP only: the delivery endpoints (advertiser-side under /api/v1/ads, operator-side under
/api/v1/ops)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from server.accounts.router import AdvertiserDep, OperatorDep
from server.core.http import SessionDep
from server.delivery import service
from server.delivery.schemas import BookingDeliveryOut, DeliveryOut

router = APIRouter(prefix="/api/v1", tags=["delivery"])

FromQ = Annotated[date | None, Query(alias="from", description="first local day, inclusive")]
ToQ = Annotated[date | None, Query(alias="to", description="last local day, inclusive")]


@router.get(
    "/ads/bookings/{booking_id}/delivery",
    summary="Booked vs played per kiosk and local day of one of your bookings",
)
def own_booking_delivery(
    booking_id: int,
    session: SessionDep,
    principal: AdvertiserDep,
    first: FromQ = None,
    last: ToQ = None,
) -> BookingDeliveryOut:
    report = service.booking_delivery(
        session, booking_id, advertiser_id=principal.advertiser_id, first=first, last=last
    )
    return BookingDeliveryOut.model_validate(report)


@router.get("/ads/delivery", summary="Booked vs played of all your bookings over local days")
def own_delivery(
    session: SessionDep,
    principal: AdvertiserDep,
    first: Annotated[date, Query(alias="from", description="first local day, inclusive")],
    last: Annotated[date, Query(alias="to", description="last local day, inclusive")],
) -> DeliveryOut:
    assert principal.advertiser_id is not None  # AdvertiserDep guarantees it
    reports = service.advertiser_delivery(session, principal.advertiser_id, first, last)
    return DeliveryOut.model_validate(
        {"first": first, "last": last, "bookings": reports}, from_attributes=True
    )


@router.get(
    "/ops/bookings/{booking_id}/delivery",
    summary="Booked vs played per kiosk and local day of any booking (operators)",
)
def booking_delivery(
    booking_id: int,
    session: SessionDep,
    _: OperatorDep,
    first: FromQ = None,
    last: ToQ = None,
) -> BookingDeliveryOut:
    report = service.booking_delivery(
        session, booking_id, advertiser_id=None, first=first, last=last
    )
    return BookingDeliveryOut.model_validate(report)
