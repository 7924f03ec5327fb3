"""Pure dashboard rules: who sees which partner's kiosks, and a kiosk's local day and week."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from server.accounts.rules import Principal
from server.accounts.service import Forbidden
from server.core.errors import NotFound
from server.models import Role


def scoped_partner(principal: Principal, requested: int | None) -> int | None:
    """The partner whose data a request may see: a partner's user always its own (another
    partner's id is answered as unknown, so ids do not leak), an operator the one asked for
    or, with None, every partner. Advertisers have no partner view."""
    if principal.is_operator:
        return requested
    if principal.role is Role.PARTNER and principal.partner_id is not None:
        if requested is not None and requested != principal.partner_id:
            raise NotFound(f"partner {requested} does not exist", partner_id=requested)
        return principal.partner_id
    raise Forbidden("partner and operator accounts only")


def actor_of(principal: Principal) -> str:
    """How the audit log names who did it."""
    return f"{principal.role.value}:{principal.login}"


@dataclass(frozen=True, slots=True)
class Periods:
    """A kiosk's local calendar at `now`, as UTC instants: today from `day_start`, this ISO
    week (Monday first) from `week_start`."""

    today: date
    day_start: datetime
    week_start: datetime


def periods(now: datetime, timezone: str) -> Periods:
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz)
    today = local.date()
    monday = today - timedelta(days=today.weekday())
    return Periods(
        today=today,
        day_start=datetime.combine(today, time(0), tz).astimezone(now.tzinfo),
        week_start=datetime.combine(monday, time(0), tz).astimezone(now.tzinfo),
    )
