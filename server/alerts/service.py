"""Alert use cases: evaluate the fleet, list a partner's alerts, acknowledge one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.alerts import repository as repo
from server.alerts import rules
from server.config import Settings
from server.core.errors import NotFound
from server.models import AuditLog
from server.models.operations import Alert

#: How far back the alert list shows closed alerts, and how many at most.
CLOSED_SHOWN_FOR = timedelta(days=7)
CLOSED_SHOWN_MAX = 200


def thresholds_of(settings: Settings) -> rules.Thresholds:
    return rules.Thresholds(
        offline_after=timedelta(seconds=settings.alert_offline_after_s),
        nearly_empty_max=settings.alert_nearly_empty_max,
        nearly_full_max_free=settings.alert_nearly_full_max_free,
        slot_fault_after=timedelta(seconds=settings.alert_slot_fault_after_s),
    )


@dataclass(frozen=True, slots=True)
class Evaluated:
    opened: int
    closed: int


def evaluate(session: Session, now: datetime, thresholds: rules.Thresholds) -> Evaluated:
    found = [f for k in repo.conditions(session, now) for f in rules.findings(k, now, thresholds)]
    plan = rules.reconcile(found, repo.open_keys(session))
    opened = repo.insert_open(session, plan.to_open, now)
    closed = repo.close(session, plan.to_close, now)
    session.flush()
    return Evaluated(opened=opened, closed=closed)


@dataclass(frozen=True, slots=True)
class AlertView:
    alert: Alert
    kiosk_name: str


def open_alerts(session: Session, partner_id: int | None) -> list[AlertView]:
    return [AlertView(a, n) for a, n in repo.open_alerts(session, partner_id)]


def closed_alerts(session: Session, partner_id: int | None, now: datetime) -> list[AlertView]:
    rows = repo.closed_alerts(session, partner_id, now - CLOSED_SHOWN_FOR, CLOSED_SHOWN_MAX)
    return [AlertView(a, n) for a, n in rows]


def get_alert(session: Session, partner_id: int | None, alert_id: int) -> AlertView:
    """One alert the caller may see; another partner's is answered as unknown."""
    found = repo.get(session, alert_id)
    if found is None or (partner_id is not None and found[0].partner_id != partner_id):
        raise NotFound(f"alert {alert_id} does not exist", alert_id=alert_id)
    return AlertView(*found)


def acknowledge(
    session: Session, partner_id: int | None, alert_id: int, *, actor: str, now: datetime
) -> AlertView:
    view = get_alert(session, partner_id, alert_id)
    if view.alert.acked_at is None:
        view.alert.acked_at = now
        view.alert.acked_by = actor
        session.add(
            AuditLog(
                actor=actor,
                action="alert.ack",
                subject=f"alert:{alert_id}",
                reason="",
                detail=f"{view.alert.kind.value} on {view.alert.kiosk_id}",
                created_at=now,
            )
        )
        session.flush()
    return view
