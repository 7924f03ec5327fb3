"""Pydantic I/O of the delivery API."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict


class DeliveryLineOut(BaseModel):
    """One kiosk on one local day: `played + lost + pending == booked`. `extra` plays (more
    than booked, or after the day was settled) are shown, never billed."""

    model_config = ConfigDict(from_attributes=True)

    kiosk_id: str
    local_date: date
    booked: int
    played: int
    extra: int
    #: Neither played nor settled yet: the day is running or a kiosk may still replay.
    pending: int
    #: Settled as lost to an offline kiosk; made good or credited per the contract.
    lost: int
    settled: bool
    #: Make-good spots owed for this day's losses, and make-good plays shown on this day.
    make_good_owed: int
    make_good_played: int
    credited_fen: int


class DeliveryTotalsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    booked: int
    played: int
    extra: int
    pending: int
    lost: int
    make_good_owed: int
    make_good_played: int
    credited_fen: int


class BookingDeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    booking_id: int
    advertiser_id: int
    name: str
    status: str
    lines: list[DeliveryLineOut]
    totals: DeliveryTotalsOut


class DeliveryOut(BaseModel):
    """Every booking of the advertiser that overlaps the range or delivered in it."""

    first: date
    last: date
    bookings: list[BookingDeliveryOut]
