"""Pydantic I/O of the bookings API."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.bookings import rules, service
from server.core.money import Fen, format_yuan
from server.kiosks import rules as kiosk_rules
from server.models import BookingStatus


class NearIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=100_000)


class SelectionIn(BaseModel):
    """Kiosks one by one, by partner region, by venue type (OpenOOH id or key) and/or within
    `near.radius_m` metres of a point. Criteria given together narrow each other."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kiosk_ids: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        default=None, min_length=1, max_length=5000
    )
    regions: list[str] | None = Field(default=None, min_length=1, max_length=100)
    venue_types: list[str] | None = Field(default=None, min_length=1, max_length=20)
    near: NearIn | None = None

    @model_validator(mode="after")
    def _something(self) -> SelectionIn:
        if not (self.kiosk_ids or self.regions or self.venue_types or self.near):
            raise ValueError("pick kiosks by kiosk_ids, regions, venue_types or near")
        return self

    def to_domain(self) -> service.Selection:
        near = self.near
        return service.Selection(
            kiosk_ids=tuple(self.kiosk_ids) if self.kiosk_ids else None,
            regions=tuple(self.regions) if self.regions else None,
            venue_types=tuple(self.venue_types) if self.venue_types else None,
            near=service.Near(near.lat, near.lon, near.radius_m) if near else None,
        )


_DAYPARTS = Field(
    default="00-24",
    max_length=200,
    description="Local whole hours HH-HH, comma separated; the end is exclusive and may cross "
    "midnight (the hours after midnight belong to the day the daypart starts on): "
    '"07-10,22-02". "00-24" is all day.',
    examples=["07-10,17-20"],
)


class BookingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    spots_per_loop: int = Field(ge=1, le=3600, description="Spots bought in every loop")
    start_date: date = Field(description="First day, in each kiosk's local time")
    end_date: date = Field(description="Last day (inclusive)")
    dayparts: str = _DAYPARTS
    selection: SelectionIn
    creative_ids: list[int] = Field(min_length=1, max_length=50)

    def to_domain(self) -> service.BookingRequest:
        return service.BookingRequest(
            name=self.name,
            spots_per_loop=self.spots_per_loop,
            start_date=self.start_date,
            end_date=self.end_date,
            dayparts=self.dayparts,
            selection=self.selection.to_domain(),
            creative_ids=tuple(self.creative_ids),
        )


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: int = Field(default=rules.DEFAULT_HOLD_MINUTES, ge=1, le=rules.MAX_HOLD_MINUTES)


class BookingKioskOut(BaseModel):
    kiosk_id: str
    days: int
    price_fen: int


class BookingOut(BaseModel):
    id: int
    advertiser_id: int
    name: str
    status: BookingStatus
    spots_per_loop: int
    start_date: date
    end_date: date
    dayparts: str
    selection: dict[str, Any]
    price_fen: int = Field(description="Total: the sum of the kiosks' prices")
    price: str = Field(description="The total for people, e.g. ¥1234.00")
    kiosks: list[BookingKioskOut]
    creative_ids: list[int]
    held_until: datetime | None
    confirmed_at: datetime | None
    ended_at: datetime | None
    revision: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_view(cls, v: service.BookingView) -> BookingOut:
        b = v.booking
        return cls(
            id=b.id,
            advertiser_id=b.advertiser_id,
            name=b.name,
            status=b.status,
            spots_per_loop=b.spots_per_loop,
            start_date=b.start_date,
            end_date=b.end_date,
            dayparts=b.dayparts,
            selection=json.loads(b.selection),
            price_fen=b.price_fen,
            price=format_yuan(Fen(b.price_fen)),
            kiosks=[
                BookingKioskOut(kiosk_id=k.kiosk_id, days=k.days, price_fen=k.price_fen)
                for k in v.kiosks
            ],
            creative_ids=v.creative_ids,
            held_until=b.held_until,
            confirmed_at=b.confirmed_at,
            ended_at=b.ended_at,
            revision=b.revision,
            created_at=b.created_at,
            updated_at=b.updated_at,
        )


class BookingPage(BaseModel):
    items: list[BookingOut]
    total: int
    limit: int
    offset: int


class AvailabilityIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    selection: SelectionIn
    start_date: date
    end_date: date
    dayparts: str = _DAYPARTS


class CalendarOut(BaseModel):
    """The open hours shared by kiosks with one time zone and opening hours; every array of
    a kiosk that uses this calendar runs over these hours."""

    timezone: str
    open_hour: int
    close_hour: int
    starts_at: list[datetime] = Field(description="UTC start of each hour")
    local: list[str] = Field(description='Local date and hour, e.g. "2026-12-01T07"')


class KioskAvailabilityOut(BaseModel):
    kiosk_id: str
    calendar: int = Field(description="Index into `calendars`")
    capacity: int = Field(description="Spots per loop the kiosk's loop holds now")
    sold: list[int]
    free: list[int]
    bookings: dict[str, list[int]] = Field(
        description="Spots per hour of each booking the caller may see, by booking id"
    )
    held_by_others: list[int] | None = Field(
        description="Advertisers only: spots per hour held by other advertisers' bookings"
    )


class AvailabilityOut(BaseModel):
    start_date: date
    end_date: date
    dayparts: str
    calendars: list[CalendarOut]
    kiosks: list[KioskAvailabilityOut]

    @classmethod
    def from_domain(cls, a: service.Availability) -> AvailabilityOut:
        calendars = [
            CalendarOut.model_construct(
                timezone=c.timezone,
                open_hour=c.open_hour,
                close_hour=c.close_hour,
                starts_at=[h.starts_at for h in c.hours],
                local=[f"{h.local_date.isoformat()}T{h.local_hour:02d}" for h in c.hours],
            )
            for c in a.calendars
        ]
        kiosks = [
            KioskAvailabilityOut.model_construct(
                kiosk_id=k.kiosk_id,
                calendar=k.calendar,
                capacity=k.capacity,
                sold=k.sold,
                free=k.free,
                bookings={str(b): spots for b, spots in sorted(k.bookings.items())},
                held_by_others=k.others,
            )
            for k in a.kiosks
        ]
        return cls.model_construct(
            start_date=a.start_date,
            end_date=a.end_date,
            dayparts=a.dayparts,
            calendars=calendars,
            kiosks=kiosks,
        )


class VenuePriceOut(BaseModel):
    venue_type: str
    key: str | None
    label_zh: str | None
    fen_per_spot_day: int
    price: str

    @classmethod
    def of(cls, venue_type: str, fen: int) -> VenuePriceOut:
        v = kiosk_rules.VENUE_TYPES.get(venue_type)
        return cls(
            venue_type=venue_type,
            key=v.key if v else None,
            label_zh=v.label_zh if v else None,
            fen_per_spot_day=fen,
            price=format_yuan(Fen(fen)),
        )


class VenuePriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fen_per_spot_day: int = Field(ge=1, le=100_000_000)
