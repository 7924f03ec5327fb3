"""HTTP only: /api/v1/partner/alerts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from server.alerts import service
from server.alerts.schemas import AlertList, AlertOut
from server.core.clock import clock
from server.core.http import SessionDep
from server.dashboard.router import ScopeDep

router = APIRouter(prefix="/api/v1/partner/alerts", tags=["partner alerts"])
AlertId = Annotated[int, Path(gt=0)]


@router.get("", summary="Open alerts, and those closed in the last 7 days")
def list_alerts(scope: ScopeDep, session: SessionDep) -> AlertList:
    now = clock.now()
    return AlertList(
        open=[AlertOut.of(a) for a in service.open_alerts(session, scope.partner_id)],
        closed=[AlertOut.of(a) for a in service.closed_alerts(session, scope.partner_id, now)],
    )


@router.get("/{alert_id}", summary="One alert")
def get_alert(alert_id: AlertId, scope: ScopeDep, session: SessionDep) -> AlertOut:
    return AlertOut.of(service.get_alert(session, scope.partner_id, alert_id))


@router.post("/{alert_id}/ack", summary="Acknowledge an alert (it still closes by itself)")
def ack_alert(alert_id: AlertId, scope: ScopeDep, session: SessionDep) -> AlertOut:
    view = service.acknowledge(
        session, scope.partner_id, alert_id, actor=scope.actor, now=clock.now()
    )
    return AlertOut.of(view)
