"""The kiosk aggregate: registry facts, live state, slots, and what the bridge observed."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.models.base import Base


class Kiosk(Base):
    """Registry facts: where it stands and who runs it. Set by operators, never by the wire."""

    __tablename__ = "kiosks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # = MQTT username/client id
    name: Mapped[str] = mapped_column(String(120))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(255))
    #: OpenOOH venue taxonomy id, e.g. "105" (transit.subway). See kiosks/rules.py.
    venue_type: Mapped[str] = mapped_column(String(16), index=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    slot_count: Mapped[int] = mapped_column(Integer, default=22)
    #: The ad screen's loop (SPEC §4): `loop_seconds` of `spot_seconds` spots, so
    #: loop_seconds // spot_seconds spots per loop (default 60 s of six 10-s spots).
    loop_seconds: Mapped[int] = mapped_column(Integer, default=60)
    spot_seconds: Mapped[int] = mapped_column(Integer, default=10)
    #: Opening hours in local whole hours, [open_hour, close_hour); close < open crosses
    #: midnight, 0-24 is always open. Ad spots are sold only while the venue is open.
    open_hour: Mapped[int] = mapped_column(Integer, default=0)
    close_hour: Mapped[int] = mapped_column(Integer, default=24)
    #: PBKDF2-SHA512 hash in Mosquitto's `$7$` format; the password itself is shown once.
    mqtt_password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]

    state: Mapped[KioskState] = relationship(back_populates="kiosk", lazy="raise")
    slots: Mapped[list[Slot]] = relationship(
        back_populates="kiosk", order_by="Slot.slot_no", lazy="raise"
    )

    __table_args__ = (Index("ix_kiosks_lat_lon", "lat", "lon"),)


class KioskState(Base):
    """What the bridge knows of a kiosk right now (SPEC §1, firmware_protocol SPEC §6)."""

    __tablename__ = "kiosk_states"

    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), primary_key=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Connection counter of the newest presence message applied; orders online/offline.
    conn: Mapped[int] = mapped_column(BigInteger, default=0)
    firmware: Mapped[str | None] = mapped_column(String(64))
    signal_dbm: Mapped[int | None] = mapped_column(Integer)
    last_seen_at: Mapped[datetime | None]
    online_changed_at: Mapped[datetime | None]
    #: Server receive time minus kiosk clock (ms): a windowed minimum over recent messages
    #: (kiosk_state/rules.py estimate_skew), and when it was last lowered or re-based.
    clock_skew_ms: Mapped[int | None] = mapped_column(BigInteger)
    clock_skew_at: Mapped[datetime | None]
    #: Highest sequence number applied.
    max_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Seq of the newest heartbeat snapshot applied. A snapshot confirms every slot it agrees
    #: with, so a slot's state is as of max(slot.applied_seq, snapshot_seq) without rewriting
    #: all 22 slot rows on every heartbeat.
    snapshot_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    playlist_version: Mapped[int | None] = mapped_column(BigInteger)

    kiosk: Mapped[Kiosk] = relationship(back_populates="state", lazy="raise")


class SlotStatus(enum.StrEnum):
    UMBRELLA = "umbrella"
    EMPTY = "empty"
    FAULT = "fault"


class Slot(Base):
    __tablename__ = "slots"

    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), primary_key=True)
    slot_no: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based
    status: Mapped[SlotStatus] = mapped_column(
        Enum(SlotStatus, native_enum=False, length=16), default=SlotStatus.EMPTY
    )
    #: RFID tag, uppercase hex; may be set on a faulty slot that holds a jammed umbrella.
    tag: Mapped[str | None] = mapped_column(String(32), index=True)
    fault_code: Mapped[int | None] = mapped_column(Integer)
    #: Seq of the message that set this state (see KioskState.snapshot_seq for the seq it is
    #: confirmed up to); older messages never overwrite it.
    applied_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The kiosk's own clock when this state began (event or contradicting snapshot).
    observed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]

    kiosk: Mapped[Kiosk] = relationship(back_populates="slots", lazy="raise")


class SlotEventRecord(Base):
    """Every insert/remove the kiosks reported, in kiosk time. Rentals and returns build on it."""

    __tablename__ = "slot_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"))
    seq: Mapped[int] = mapped_column(BigInteger)
    slot_no: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))  # "in" | "out"
    tag: Mapped[str | None] = mapped_column(String(32), index=True)
    cmd_id: Mapped[str | None] = mapped_column(String(64))
    kiosk_time: Mapped[datetime]
    received_at: Mapped[datetime]

    __table_args__ = (Index("ix_slot_events_kiosk_time", "kiosk_id", "kiosk_time"),)


class SlotDisagreement(Base):
    """A heartbeat snapshot that contradicted the state built from events: kept, not hidden."""

    __tablename__ = "slot_disagreements"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), index=True)
    slot_no: Mapped[int] = mapped_column(Integer)
    heartbeat_seq: Mapped[int] = mapped_column(BigInteger)
    believed_status: Mapped[str] = mapped_column(String(16))
    believed_tag: Mapped[str | None] = mapped_column(String(32))
    reported_status: Mapped[str] = mapped_column(String(16))
    reported_tag: Mapped[str | None] = mapped_column(String(32))
    detected_at: Mapped[datetime]


class KioskFault(Base):
    __tablename__ = "kiosk_faults"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    slot_no: Mapped[int | None] = mapped_column(Integer)
    code: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(String(1024), default="")
    kiosk_time: Mapped[datetime]
    received_at: Mapped[datetime]
