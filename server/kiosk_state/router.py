"""HTTP only: /api/v1/uplinks — what the bridges received, applied and rejected, and why."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from server.accounts.router import current_operator
from server.core.clock import clock
from server.core.http import SessionDep, services
from server.kiosk_state import repository as repo
from server.kiosk_state.schemas import Rejection, UplinkStats

router = APIRouter(prefix="/api/v1/uplinks", tags=["uplinks"])


@router.get(
    "/stats",
    dependencies=[Depends(current_operator)],
    summary="Bridge counters, and rejected uplinks with their reasons",
)
def uplink_stats(
    session: SessionDep,
    request: Request,
    recent: Annotated[int, Query(ge=0, le=200)] = 20,
) -> UplinkStats:
    state = services(request).shared_state
    counters = state.counters("bridge.") if state is not None else {}
    return UplinkStats(
        counters=counters,
        rejected_last_24h=repo.rejected_counts_since(session, clock.now() - timedelta(hours=24)),
        recent_rejections=[
            Rejection(topic=r.topic, reason=r.reason, detail=r.detail, received_at=r.received_at)
            for r in repo.recent_rejections(session, recent)
        ],
    )
