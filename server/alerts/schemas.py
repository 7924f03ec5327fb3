"""Pydantic I/O of the alert API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from server.alerts.rules import WHOLE_KIOSK
from server.alerts.service import AlertView
from server.models.operations import AlertKind


class AlertOut(BaseModel):
    id: int
    partner_id: int
    kiosk_id: str
    kiosk_name: str
    kind: AlertKind
    #: Set for slot alerts, null for whole-kiosk ones.
    slot_no: int | None
    message: str
    opened_at: datetime
    closed_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None

    @classmethod
    def of(cls, view: AlertView) -> AlertOut:
        a = view.alert
        return cls(
            id=a.id,
            partner_id=a.partner_id,
            kiosk_id=a.kiosk_id,
            kiosk_name=view.kiosk_name,
            kind=a.kind,
            slot_no=None if a.slot_no == WHOLE_KIOSK else a.slot_no,
            message=a.message,
            opened_at=a.opened_at,
            closed_at=a.closed_at,
            acked_at=a.acked_at,
            acked_by=a.acked_by,
        )


class AlertList(BaseModel):
    open: list[AlertOut]
    #: Closed in the last 7 days, newest first (at most 200).
    closed: list[AlertOut]
