"""HTTP only: the rider's notifications (/api/v1/riders/me/notifications)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from server.core.http import SessionDep
from server.notifications import service
from server.notifications.schemas import NotificationOut, NotificationPage
from server.riders.router import RiderDep

router = APIRouter(prefix="/api/v1/riders/me", tags=["riders"])


@router.get("/notifications", summary="What the rider was told, newest first")
def my_notifications(
    rider: RiderDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> NotificationPage:
    rows, total = service.list_for_rider(session, rider.id, limit=limit, offset=offset)
    return NotificationPage(
        items=[
            NotificationOut(
                id=n.id,
                kind=n.kind,
                payload=service.payload_of(n),
                status=n.status.value,
                created_at=n.created_at,
                sent_at=n.sent_at,
            )
            for n in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
    )
