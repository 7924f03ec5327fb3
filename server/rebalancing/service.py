"""Rebalancing use cases: suggest moves, create tasks, mark them done, and show the slot
events the restock produced at both kiosks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.core.errors import Conflict, DomainError, NotFound
from server.dashboard import repository as dashboard_repo
from server.models import AuditLog
from server.models.operations import RebalancingTask, TaskStatus
from server.rebalancing import repository as repo
from server.rebalancing import rules


class InvalidTask(DomainError):
    code = "invalid_task"


class PartnerRequired(DomainError):
    status_code = 422
    code = "partner_required"


@dataclass(frozen=True, slots=True)
class Suggestions:
    generated_at: datetime
    horizon_hours: float
    projections: list[rules.Projection]
    moves: list[rules.Move]
    names: dict[str, str]


def suggestions(
    session: Session,
    partner_id: int | None,
    now: datetime,
    *,
    params: rules.Params,
    window: timedelta,
) -> Suggestions:
    if partner_id is None:
        raise PartnerRequired("suggestions are made within one partner: pass partner_id")
    live = dashboard_repo.live(session, partner_id)
    flow = repo.flows(session, partner_id, now - window)
    hours = window.total_seconds() / 3600
    stocks = [
        rules.KioskStock(
            kiosk_id=k.id,
            lat=k.lat,
            lon=k.lon,
            umbrellas=k.umbrellas,
            capacity=k.capacity - k.faulty_slots,
            rentals_per_hour=flow.get(k.id, (0, 0))[0] / hours,
            returns_per_hour=flow.get(k.id, (0, 0))[1] / hours,
        )
        for k in live
    ]
    projections, moves = rules.suggest(stocks, params)
    return Suggestions(now, params.horizon_hours, projections, moves, {k.id: k.name for k in live})


@dataclass(frozen=True, slots=True)
class Observed:
    kiosk_id: str
    removed: int
    inserted: int
    umbrellas_now: int


@dataclass(frozen=True, slots=True)
class TaskView:
    task: RebalancingTask
    from_name: str
    to_name: str
    observed_from: Observed
    observed_to: Observed


def _views(session: Session, tasks: list[RebalancingTask], now: datetime) -> list[TaskView]:
    ids = {k for t in tasks for k in (t.from_kiosk_id, t.to_kiosk_id)}
    names = repo.names(session, ids)
    stock = repo.umbrellas_now(session, ids) if ids else {}
    out = []
    for t in tasks:
        counts = repo.slot_event_counts(
            session, [t.from_kiosk_id, t.to_kiosk_id], t.created_at, t.done_at or now
        )

        def seen(kiosk_id: str, c: dict[tuple[str, str], int] = counts) -> Observed:
            return Observed(
                kiosk_id,
                c.get((kiosk_id, "out"), 0),
                c.get((kiosk_id, "in"), 0),
                stock.get(kiosk_id, 0),
            )

        out.append(
            TaskView(
                t,
                names.get(t.from_kiosk_id, ""),
                names.get(t.to_kiosk_id, ""),
                seen(t.from_kiosk_id),
                seen(t.to_kiosk_id),
            )
        )
    return out


def _audit(session: Session, actor: str, action: str, task: RebalancingTask, now: datetime) -> None:
    session.add(
        AuditLog(
            actor=actor,
            action=action,
            subject=f"rebalancing_task:{task.id}",
            reason=task.note[:500],
            detail=f"{task.quantity} from {task.from_kiosk_id} to {task.to_kiosk_id}",
            created_at=now,
        )
    )
    session.flush()


def create_task(
    session: Session,
    partner_id: int | None,
    *,
    from_kiosk_id: str,
    to_kiosk_id: str,
    quantity: int,
    note: str,
    actor: str,
    now: datetime,
) -> TaskView:
    """Both kiosks must be the caller's partner's (another partner's kiosk is unknown to it);
    an operator's task belongs to the kiosks' partner, which must be one."""
    if quantity < 1:
        raise InvalidTask("quantity must be at least 1", quantity=quantity)
    if from_kiosk_id == to_kiosk_id:
        raise InvalidTask(
            "a task moves umbrellas between two different kiosks", kiosk_id=to_kiosk_id
        )
    known = repo.kiosk_partners(session, [from_kiosk_id, to_kiosk_id])
    for kiosk_id in (from_kiosk_id, to_kiosk_id):
        owner = known.get(kiosk_id)
        if owner is None or (partner_id is not None and owner[0] != partner_id):
            raise NotFound(f"kiosk {kiosk_id} does not exist", kiosk_id=kiosk_id)
    if known[from_kiosk_id][0] != known[to_kiosk_id][0]:
        raise InvalidTask("both kiosks must belong to the same partner")
    task = RebalancingTask(
        partner_id=known[from_kiosk_id][0],
        from_kiosk_id=from_kiosk_id,
        to_kiosk_id=to_kiosk_id,
        quantity=quantity,
        status=TaskStatus.OPEN,
        note=note,
        created_at=now,
        created_by=actor,
    )
    repo.add(session, task)
    _audit(session, actor, "rebalancing.task_created", task, now)
    return _views(session, [task], now)[0]


def _owned(
    session: Session, partner_id: int | None, task_id: int, *, for_update: bool = False
) -> RebalancingTask:
    task = repo.get(session, task_id, for_update=for_update)
    if task is None or (partner_id is not None and task.partner_id != partner_id):
        raise NotFound(f"task {task_id} does not exist", task_id=task_id)
    return task


def get_task(session: Session, partner_id: int | None, task_id: int, now: datetime) -> TaskView:
    return _views(session, [_owned(session, partner_id, task_id)], now)[0]


def list_tasks(
    session: Session, partner_id: int | None, status: TaskStatus | None, now: datetime
) -> list[TaskView]:
    return _views(session, repo.list_tasks(session, partner_id, status, limit=500), now)


def mark_done(
    session: Session, partner_id: int | None, task_id: int, *, note: str, actor: str, now: datetime
) -> TaskView:
    task = _owned(session, partner_id, task_id, for_update=True)
    if task.status is TaskStatus.DONE:
        raise Conflict(f"task {task_id} is already done", task_id=task_id, done_by=task.done_by)
    task.status = TaskStatus.DONE
    task.done_at = now
    task.done_by = actor
    if note:
        task.note = (f"{task.note}\n{note}" if task.note else note)[:500]
    _audit(session, actor, "rebalancing.task_done", task, now)
    return _views(session, [task], now)[0]
