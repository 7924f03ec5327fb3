"""Pydantic I/O of the rebalancing API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from server.kiosks.rules import KIOSK_ID_PATTERN
from server.models.operations import TaskStatus
from server.rebalancing.service import Observed, Suggestions, TaskView


class MoveOut(BaseModel):
    from_kiosk_id: str
    from_kiosk_name: str
    to_kiosk_id: str
    to_kiosk_name: str
    quantity: int
    distance_m: int


class ProjectionOut(BaseModel):
    kiosk_id: str
    umbrellas: int
    capacity: int
    net_flow_per_hour: float
    projected: int
    target_low: int
    target_high: int


class SuggestionsOut(BaseModel):
    generated_at: datetime
    horizon_hours: float
    suggestions: list[MoveOut]
    projections: list[ProjectionOut]

    @classmethod
    def of(cls, s: Suggestions) -> SuggestionsOut:
        return cls(
            generated_at=s.generated_at,
            horizon_hours=s.horizon_hours,
            suggestions=[
                MoveOut(
                    from_kiosk_id=m.from_kiosk_id,
                    from_kiosk_name=s.names.get(m.from_kiosk_id, ""),
                    to_kiosk_id=m.to_kiosk_id,
                    to_kiosk_name=s.names.get(m.to_kiosk_id, ""),
                    quantity=m.quantity,
                    distance_m=m.distance_m,
                )
                for m in s.moves
            ],
            projections=[
                ProjectionOut(
                    kiosk_id=p.kiosk_id,
                    umbrellas=p.umbrellas,
                    capacity=p.capacity,
                    net_flow_per_hour=round(p.net_flow_per_hour, 3),
                    projected=p.projected,
                    target_low=p.target_low,
                    target_high=p.target_high,
                )
                for p in s.projections
            ],
        )


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    from_kiosk_id: str = Field(pattern=KIOSK_ID_PATTERN)
    to_kiosk_id: str = Field(pattern=KIOSK_ID_PATTERN)
    quantity: int = Field(ge=1, le=1000)
    note: str = Field(default="", max_length=500)


class TaskDone(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: str = Field(default="", max_length=500)


class ObservedOut(BaseModel):
    kiosk_id: str
    #: Slot events the kiosk reported since the task was created (until it was done).
    removed: int
    inserted: int
    umbrellas_now: int

    @classmethod
    def of(cls, o: Observed) -> ObservedOut:
        return cls(
            kiosk_id=o.kiosk_id,
            removed=o.removed,
            inserted=o.inserted,
            umbrellas_now=o.umbrellas_now,
        )


class TaskObserved(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: ObservedOut = Field(alias="from", serialization_alias="from")
    to: ObservedOut


class TaskOut(BaseModel):
    id: int
    partner_id: int
    from_kiosk_id: str
    from_kiosk_name: str
    to_kiosk_id: str
    to_kiosk_name: str
    quantity: int
    status: TaskStatus
    note: str
    created_at: datetime
    created_by: str
    done_at: datetime | None
    done_by: str | None
    observed: TaskObserved

    @classmethod
    def of(cls, v: TaskView) -> TaskOut:
        t = v.task
        return cls(
            id=t.id,
            partner_id=t.partner_id,
            from_kiosk_id=t.from_kiosk_id,
            from_kiosk_name=v.from_name,
            to_kiosk_id=t.to_kiosk_id,
            to_kiosk_name=v.to_name,
            quantity=t.quantity,
            status=t.status,
            note=t.note,
            created_at=t.created_at,
            created_by=t.created_by,
            done_at=t.done_at,
            done_by=t.done_by,
            observed=TaskObserved(
                from_=ObservedOut.of(v.observed_from), to=ObservedOut.of(v.observed_to)
            ),
        )


class TaskList(BaseModel):
    items: list[TaskOut]
