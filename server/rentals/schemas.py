"""Pydantic I/O of the rentals API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class RentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    #: The kiosk id printed in the kiosk's QR code.
    kiosk_id: str = Field(min_length=1, max_length=32, examples=["K0001"])


class RentalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: str
    kiosk_id: str
    slot_no: int
    umbrella_tag: str | None
    deposit_fen: int
    #: Why it failed or was ended by an operator.
    reason: str | None
    created_at: datetime
    #: When the kiosk saw the umbrella leave the slot: the free window starts here.
    started_at: datetime | None
    #: Return by then (7 days after start) or the deposit is forfeited.
    deadline_at: datetime | None
    returned_at: datetime | None
    return_kiosk_id: str | None
    forfeited_at: datetime | None
    ended_at: datetime | None


class RentalPage(BaseModel):
    items: list[RentalOut]
    #: Pass as `before_id` for the next (older) page; None at the end.
    next_before_id: int | None


class ForceEndIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=3, max_length=500)


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    actor: str
    action: str
    subject: str
    reason: str
    detail: str
    created_at: datetime


class OpsRentalOut(RentalOut):
    rider_id: int
    attempts: int
    cmd_id: str | None
    audit: list[AuditOut] = []


class StuckRentalsOut(BaseModel):
    #: Unlocks sent long ago with no outcome yet.
    ejecting: list[OpsRentalOut]
    #: Active rentals well past their deadline (the forfeiture sweep is behind).
    overdue: list[OpsRentalOut]
    #: Active rentals whose umbrella a kiosk reports in a slot (the return event never came).
    in_slot_but_on_rent: list[OpsRentalOut]
    counts_by_status: dict[str, int]


class UmbrellaOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    tag: str
    state: str
    kiosk_id: str | None
    slot_no: int | None
    first_seen_at: datetime
    updated_at: datetime
