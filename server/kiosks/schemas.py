"""Pydantic I/O of the kiosk API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.bookings import rules as ad_rules
from server.kiosks import rules
from server.kiosks.repository import KioskRow
from server.kiosks.service import KioskDetail, NearbyKiosk
from server.models import Kiosk, SlotStatus


class KioskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str | None = Field(
        default=None,
        pattern=rules.KIOSK_ID_PATTERN,
        description="Kiosk id = MQTT username = client id; generated as K + 6 digits if omitted.",
        examples=["K000123"],
    )
    name: str = Field(min_length=1, max_length=120, examples=["西湖文化广场 B 口"])
    partner_id: int = Field(gt=0)
    lat: float = Field(ge=-90, le=90, examples=[30.2741])
    lon: float = Field(ge=-180, le=180, examples=[120.1551])
    address: str = Field(min_length=1, max_length=255)
    venue_type: str = Field(
        description="OpenOOH venue taxonomy id: "
        + ", ".join(f"{v.id} = {v.key}" for v in rules.VENUE_TYPES.values())
        + " (the key is accepted too).",
        examples=["105"],
    )
    timezone: str = Field(default=rules.DEFAULT_TIMEZONE, max_length=64)
    slot_count: int = Field(default=rules.DEFAULT_SLOT_COUNT, ge=1, le=rules.MAX_SLOT_COUNT)
    loop_seconds: int = Field(
        default=ad_rules.DEFAULT_LOOP_SECONDS, ge=1, le=3600, description="The ad screen's loop"
    )
    spot_seconds: int = Field(
        default=ad_rules.DEFAULT_SPOT_SECONDS,
        ge=1,
        le=300,
        description="One spot; loop_seconds must be a multiple of it",
    )
    open_hour: int = Field(default=0, ge=0, le=23, description="Local hour the venue opens")
    close_hour: int = Field(
        default=24, ge=1, le=24, description="Local hour it closes; < open_hour crosses midnight"
    )

    @model_validator(mode="after")
    def _screen(self) -> KioskCreate:
        ad_rules.validate_loop(self.loop_seconds, self.spot_seconds)
        ad_rules.validate_opening_hours(self.open_hour, self.close_hour)
        return self

    @field_validator("venue_type")
    @classmethod
    def _venue(cls, value: str) -> str:
        return rules.resolve_venue_type(value)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value


class KioskSummary(BaseModel):
    id: str
    name: str
    partner_id: int
    lat: float
    lon: float
    address: str
    venue_type: str
    venue_name: str | None
    slot_count: int
    online: bool
    last_seen_at: datetime | None
    umbrellas: int
    free_slots: int
    faulty_slots: int

    @classmethod
    def from_row(cls, row: KioskRow) -> KioskSummary:
        k = row.kiosk
        venue = rules.VENUE_TYPES.get(k.venue_type)
        return cls(
            id=k.id,
            name=k.name,
            partner_id=k.partner_id,
            lat=k.lat,
            lon=k.lon,
            address=k.address,
            venue_type=k.venue_type,
            venue_name=venue.taxonomy_name if venue else None,
            slot_count=k.slot_count,
            online=row.online,
            last_seen_at=row.last_seen_at,
            umbrellas=row.umbrellas,
            free_slots=row.free_slots,
            faulty_slots=row.faulty_slots,
        )


class KioskCreated(KioskSummary):
    mqtt_username: str
    mqtt_password: str = Field(
        description="Shown once; only a PBKDF2 hash is stored. Rotate it if lost."
    )


class KioskPage(BaseModel):
    items: list[KioskSummary]
    total: int
    limit: int
    offset: int


class SlotOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    slot_no: int
    status: SlotStatus
    tag: str | None
    fault_code: int | None
    observed_at: datetime | None


class AdScreenIn(BaseModel):
    """The ad screen's loop and the venue's opening hours (SPEC §4 Inventory). Fields left
    out keep their value."""

    model_config = ConfigDict(extra="forbid")

    loop_seconds: int | None = Field(default=None, ge=1, le=3600)
    spot_seconds: int | None = Field(default=None, ge=1, le=300)
    open_hour: int | None = Field(default=None, ge=0, le=23)
    close_hour: int | None = Field(default=None, ge=1, le=24)


class AdScreenOut(BaseModel):
    kiosk_id: str
    loop_seconds: int
    spot_seconds: int
    spots_per_loop: int
    open_hour: int
    close_hour: int

    @classmethod
    def of(cls, k: Kiosk) -> AdScreenOut:
        return cls(
            kiosk_id=k.id,
            loop_seconds=k.loop_seconds,
            spot_seconds=k.spot_seconds,
            spots_per_loop=k.loop_seconds // k.spot_seconds,
            open_hour=k.open_hour,
            close_hour=k.close_hour,
        )


class KioskOut(KioskSummary):
    timezone: str
    created_at: datetime
    ad_screen: AdScreenOut
    firmware: str | None
    signal_dbm: int | None
    online_changed_at: datetime | None
    clock_skew_ms: int | None = Field(
        description="Receive time minus the kiosk's clock, estimated from its messages"
    )
    clock_off: bool = Field(
        description=f"The kiosk's clock is off by more than {rules.CLOCK_OFF_MS // 1000} s "
        "(firmware_protocol SPEC §8)"
    )
    slots: list[SlotOut]

    @classmethod
    def from_detail(cls, d: KioskDetail) -> KioskOut:
        base = KioskSummary.from_row(d.row).model_dump()
        skew = d.state.clock_skew_ms if d.state else None
        return cls(
            **base,
            timezone=d.row.kiosk.timezone,
            created_at=d.row.kiosk.created_at,
            ad_screen=AdScreenOut.of(d.row.kiosk),
            firmware=d.state.firmware if d.state else None,
            signal_dbm=d.state.signal_dbm if d.state else None,
            online_changed_at=d.state.online_changed_at if d.state else None,
            clock_skew_ms=skew,
            clock_off=skew is not None and abs(skew) > rules.CLOCK_OFF_MS,
            slots=[SlotOut.model_validate(s) for s in d.slots],
        )


class NearbyItem(KioskSummary):
    distance_m: float

    @classmethod
    def from_nearby(cls, n: NearbyKiosk) -> NearbyItem:
        return cls(**KioskSummary.from_row(n.row).model_dump(), distance_m=round(n.distance_m, 1))


class NearbyOut(BaseModel):
    lat: float
    lon: float
    radius_m: float
    need: Literal["umbrella", "free_slot"]
    items: list[NearbyItem]


class PasswordRotated(BaseModel):
    kiosk_id: str
    mqtt_password: str


class CommandIn(BaseModel):
    """An operator's command to one kiosk (maintenance; riders' unlocks go through rentals)."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["ping", "unlock"]
    slot: int | None = Field(default=None, ge=1, le=rules.MAX_SLOT_COUNT)
    timeout_s: float = Field(default=10.0, gt=0, le=60)

    @model_validator(mode="after")
    def _unlock_names_a_slot(self) -> CommandIn:
        if self.op == "unlock" and self.slot is None:
            raise ValueError("slot: an unlock needs the slot number")
        return self


class CommandOut(BaseModel):
    command_id: str
    kiosk_id: str
    status: str = Field(description="The kiosk's answer: ok, taken, not_taken, jammed, empty, ...")
    slot: int | None = None
    tag: str | None = Field(default=None, description="RFID tag, uppercase hex")
