"""HTTP only: /api/v1/partner/dashboard (+ its live stream), and `ScopeDep`, the partner scope
every partner-facing router starts from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from anyio import to_thread
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from server.accounts.router import PrincipalDep, current_principal
from server.accounts.rules import Principal
from server.core.clock import clock
from server.core.http import SessionDep, services
from server.dashboard import rules, service
from server.dashboard.schemas import DashboardOut
from server.dashboard.stream import DashboardStream, sse

PartnerQuery = Annotated[
    int | None,
    Query(gt=0, description="Operators: one partner (default all). Partners: their own only."),
]


@dataclass(frozen=True, slots=True)
class Scope:
    #: None: an operator looking at every partner.
    partner_id: int | None
    principal: Principal

    @property
    def actor(self) -> str:
        return rules.actor_of(self.principal)


def partner_scope(
    principal: PrincipalDep, session: SessionDep, partner_id: PartnerQuery = None
) -> Scope:
    return Scope(service.partner_scope(session, principal, partner_id), principal)


ScopeDep = Annotated[Scope, Depends(partner_scope)]

router = APIRouter(prefix="/api/v1/partner", tags=["partner dashboard"])


@router.get(
    "/dashboard",
    summary="The partner's kiosks: live state, today's and this week's counts, open alerts",
)
def get_dashboard(scope: ScopeDep, session: SessionDep) -> DashboardOut:
    return DashboardOut.of(service.dashboard(session, scope.partner_id, clock.now()))


@router.get(
    "/dashboard/stream",
    summary="Server-Sent Events: kiosk and alert changes as they happen",
    description=(
        "text/event-stream. Events: `kiosks` {full, kiosks: [changed tiles], removed, totals,"
        " generated_at} (the first one carries every kiosk, full=true), `alerts` {alerts:"
        " [open alerts]}; `: ping` comments keep the connection open. EventSource cannot"
        " set headers, so the token may also come as ?token=."
    ),
    response_class=StreamingResponse,
)
async def stream_dashboard(
    request: Request,
    partner_id: PartnerQuery = None,
    token: Annotated[str | None, Query(description="The bearer token, for EventSource")] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    svc = services(request)
    auth = authorization or (f"Bearer {token}" if token else None)

    def scope() -> int | None:
        with svc.db.transaction() as session:
            principal = current_principal(request, session, auth)
            return service.partner_scope(session, principal, partner_id)

    partner = await to_thread.run_sync(scope)
    feed = DashboardStream(svc.db, partner, svc.settings.dashboard_stream_refresh_s)
    return StreamingResponse(
        _events(
            request,
            feed,
            svc.settings.dashboard_stream_poll_s,
            svc.settings.dashboard_stream_keepalive_s,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    request: Request, feed: DashboardStream, poll_s: float, keepalive_s: float
) -> AsyncIterator[str]:
    yield "retry: 3000\n\n" + sse("ready", {"partner_id": feed.partner_id})
    quiet = 0.0
    while not await request.is_disconnected():
        events = await to_thread.run_sync(feed.poll)
        for event in events:
            yield event
        quiet = 0.0 if events else quiet + poll_s
        if quiet >= keepalive_s:
            quiet = 0.0
            yield ": ping\n\n"
        await anyio.sleep(poll_s)
