"""Dashboard use cases: a partner's kiosks with live state and today's and this week's
counts, and the scope check every partner-facing endpoint starts with."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from server.accounts.rules import Principal
from server.alerts import repository as alerts_repo
from server.alerts import service as alerts
from server.core.errors import NotFound
from server.dashboard import repository as repo
from server.dashboard import rules
from server.dashboard.repository import KioskLive


def partner_scope(session: Session, principal: Principal, requested: int | None) -> int | None:
    """The partner id the request is limited to (None: an operator looking at everything)."""
    partner_id = rules.scoped_partner(principal, requested)
    if partner_id is not None and not repo.partner_exists(session, partner_id):
        raise NotFound(f"partner {partner_id} does not exist", partner_id=partner_id)
    return partner_id


@dataclass(slots=True)
class Tile:
    live: KioskLive
    rentals_today: int = 0
    rentals_week: int = 0
    forfeitures_today: int = 0
    forfeitures_week: int = 0
    ad_plays_today: int = 0
    open_alerts: int = 0


COUNTERS = (
    "umbrellas",
    "empty_slots",
    "faulty_slots",
    "rentals_today",
    "rentals_week",
    "forfeitures_today",
    "forfeitures_week",
    "ad_plays_today",
    "open_alerts",
)


@dataclass(frozen=True, slots=True)
class Dashboard:
    partner_id: int | None
    generated_at: datetime
    tiles: list[Tile]
    alerts: list[alerts.AlertView] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        online = sum(1 for t in self.tiles if t.live.online)
        out = {"kiosks": len(self.tiles), "online": online, "offline": len(self.tiles) - online}
        out |= {name: 0 for name in COUNTERS}
        for t in self.tiles:
            out["umbrellas"] += t.live.umbrellas
            out["empty_slots"] += t.live.empty_slots
            out["faulty_slots"] += t.live.faulty_slots
            out["rentals_today"] += t.rentals_today
            out["rentals_week"] += t.rentals_week
            out["forfeitures_today"] += t.forfeitures_today
            out["forfeitures_week"] += t.forfeitures_week
            out["ad_plays_today"] += t.ad_plays_today
            out["open_alerts"] += t.open_alerts
        return out


def tiles(
    session: Session,
    partner_id: int | None,
    now: datetime,
    kiosk_ids: Collection[str] | None = None,
) -> list[Tile]:
    """One tile per kiosk in scope. Counters are per kiosk local calendar: one query per
    source and time zone in scope (a partner's kiosks share one time zone in practice)."""
    out = [Tile(k) for k in repo.live(session, partner_id, kiosk_ids)]
    zones = sorted({t.live.timezone for t in out})
    for zone in zones:
        p = rules.periods(now, zone)
        tz: str | None = zone if len(zones) > 1 else None
        window: dict[str, Any] = {
            "timezone": tz,
            "day_start": p.day_start,
            "week_start": p.week_start,
            "kiosk_ids": kiosk_ids,
        }
        started = repo.rentals_started(session, partner_id, **window)
        forfeited = repo.forfeitures(session, partner_id, **window)
        plays = repo.ad_plays(session, partner_id, timezone=tz, today=p.today, kiosk_ids=kiosk_ids)
        for t in out:
            if t.live.timezone != zone:
                continue
            t.rentals_today, t.rentals_week = started.get(t.live.id, (0, 0))
            t.forfeitures_today, t.forfeitures_week = forfeited.get(t.live.id, (0, 0))
            (t.ad_plays_today,) = plays.get(t.live.id, (0,))
    open_counts = alerts_repo.open_counts(session, partner_id)
    for t in out:
        t.open_alerts = open_counts.get(t.live.id, 0)
    return out


def dashboard(session: Session, partner_id: int | None, now: datetime) -> Dashboard:
    return Dashboard(
        partner_id=partner_id,
        generated_at=now,
        tiles=tiles(session, partner_id, now),
        alerts=alerts.open_alerts(session, partner_id),
    )


def change_signal(session: Session, partner_id: int | None) -> tuple[Any, ...]:
    """Kiosk states and slots, then alerts: equal signals mean nothing to push."""
    return (*repo.change_signal(session, partner_id), *alerts_repo.signal(session, partner_id))
