"""HTTP only: /api/v1/partner/rebalancing."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status

from server.core.clock import clock
from server.core.http import SessionDep, services
from server.dashboard.router import ScopeDep
from server.models.operations import TaskStatus
from server.rebalancing import rules, service
from server.rebalancing.schemas import SuggestionsOut, TaskCreate, TaskDone, TaskList, TaskOut

router = APIRouter(prefix="/api/v1/partner/rebalancing", tags=["partner rebalancing"])
TaskId = Annotated[int, Path(gt=0)]


@router.get("/suggestions", summary="Suggested moves from projected surplus to deficit kiosks")
def get_suggestions(
    scope: ScopeDep,
    session: SessionDep,
    request: Request,
    horizon_hours: Annotated[float | None, Query(gt=0, le=48)] = None,
) -> SuggestionsOut:
    settings = services(request).settings
    params = rules.Params(horizon_hours=horizon_hours or settings.rebalancing_horizon_h)
    found = service.suggestions(
        session,
        scope.partner_id,
        clock.now(),
        params=params,
        window=timedelta(hours=settings.rebalancing_flow_window_h),
    )
    return SuggestionsOut.of(found)


@router.post(
    "/tasks",
    status_code=status.HTTP_201_CREATED,
    summary="Create a task for field staff (from a suggestion or by hand)",
)
def create_task(body: TaskCreate, scope: ScopeDep, session: SessionDep) -> TaskOut:
    view = service.create_task(
        session,
        scope.partner_id,
        from_kiosk_id=body.from_kiosk_id,
        to_kiosk_id=body.to_kiosk_id,
        quantity=body.quantity,
        note=body.note,
        actor=scope.actor,
        now=clock.now(),
    )
    return TaskOut.of(view)


@router.get("/tasks", summary="Tasks, newest first (at most 500)")
def list_tasks(scope: ScopeDep, session: SessionDep, status: TaskStatus | None = None) -> TaskList:
    views = service.list_tasks(session, scope.partner_id, status, clock.now())
    return TaskList(items=[TaskOut.of(v) for v in views])


@router.get("/tasks/{task_id}", summary="One task, with the slot events seen at both kiosks")
def get_task(task_id: TaskId, scope: ScopeDep, session: SessionDep) -> TaskOut:
    return TaskOut.of(service.get_task(session, scope.partner_id, task_id, clock.now()))


@router.post("/tasks/{task_id}/done", summary="Field staff: the umbrellas were moved")
def mark_done(
    task_id: TaskId, scope: ScopeDep, session: SessionDep, body: TaskDone | None = None
) -> TaskOut:
    view = service.mark_done(
        session,
        scope.partner_id,
        task_id,
        note=body.note if body else "",
        actor=scope.actor,
        now=clock.now(),
    )
    return TaskOut.of(view)
