"""Pydantic I/O of the partner dashboard (JSON shapes: /work/notes/dashboard-api.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from server.alerts.schemas import AlertOut
from server.dashboard.service import Dashboard, Tile


class KioskTileOut(BaseModel):
    id: str
    name: str
    partner_id: int
    lat: float
    lon: float
    address: str
    venue_type: str
    capacity: int
    online: bool
    last_seen_at: datetime | None
    online_changed_at: datetime | None
    umbrellas: int
    empty_slots: int
    faulty_slots: int
    rentals_today: int
    rentals_week: int
    forfeitures_today: int
    forfeitures_week: int
    ad_plays_today: int
    open_alerts: int

    @classmethod
    def of(cls, t: Tile) -> KioskTileOut:
        k = t.live
        return cls(
            id=k.id,
            name=k.name,
            partner_id=k.partner_id,
            lat=k.lat,
            lon=k.lon,
            address=k.address,
            venue_type=k.venue_type,
            capacity=k.capacity,
            online=k.online,
            last_seen_at=k.last_seen_at,
            online_changed_at=k.online_changed_at,
            umbrellas=k.umbrellas,
            empty_slots=k.empty_slots,
            faulty_slots=k.faulty_slots,
            rentals_today=t.rentals_today,
            rentals_week=t.rentals_week,
            forfeitures_today=t.forfeitures_today,
            forfeitures_week=t.forfeitures_week,
            ad_plays_today=t.ad_plays_today,
            open_alerts=t.open_alerts,
        )


class TotalsOut(BaseModel):
    kiosks: int
    online: int
    offline: int
    umbrellas: int
    empty_slots: int
    faulty_slots: int
    rentals_today: int
    rentals_week: int
    forfeitures_today: int
    forfeitures_week: int
    ad_plays_today: int
    open_alerts: int


class Bounds(BaseModel):
    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float


class DashboardOut(BaseModel):
    #: Null for an operator looking at every partner.
    partner_id: int | None
    generated_at: datetime
    #: The box around the kiosks, for drawing them; null without kiosks.
    bounds: Bounds | None
    kiosks: list[KioskTileOut]
    totals: TotalsOut
    #: Open alerts, newest first.
    alerts: list[AlertOut]

    @classmethod
    def of(cls, d: Dashboard) -> DashboardOut:
        lats = [t.live.lat for t in d.tiles]
        lons = [t.live.lon for t in d.tiles]
        bounds = (
            Bounds(min_lat=min(lats), min_lon=min(lons), max_lat=max(lats), max_lon=max(lons))
            if d.tiles
            else None
        )
        return cls(
            partner_id=d.partner_id,
            generated_at=d.generated_at,
            bounds=bounds,
            kiosks=[KioskTileOut.of(t) for t in d.tiles],
            totals=TotalsOut(**d.totals()),
            alerts=[AlertOut.of(a) for a in d.alerts],
        )
