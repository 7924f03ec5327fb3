"""Pure alert rules: which conditions hold on a kiosk now, and what to open and close."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.models.operations import AlertKind

#: `Alert.slot_no` of an alert about the whole kiosk.
WHOLE_KIOSK = 0


@dataclass(frozen=True, slots=True)
class Thresholds:
    offline_after: timedelta = timedelta(minutes=10)
    nearly_empty_max: int = 2
    nearly_full_max_free: int = 2
    slot_fault_after: timedelta = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class FaultySlot:
    slot_no: int
    #: When the fault began: the kiosk's observed time, else when the server stored it.
    since: datetime | None


@dataclass(frozen=True, slots=True)
class KioskCondition:
    kiosk_id: str
    partner_id: int
    online: bool
    #: Since when the kiosk is offline: the last flip, else last seen, else registration.
    offline_since: datetime
    umbrellas: int
    free_slots: int
    faulty: tuple[FaultySlot, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class AlertKey:
    kiosk_id: str
    kind: AlertKind
    slot_no: int = WHOLE_KIOSK


@dataclass(frozen=True, slots=True)
class Finding:
    key: AlertKey
    partner_id: int
    message: str


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def findings(k: KioskCondition, now: datetime, t: Thresholds) -> list[Finding]:
    """Every alert condition that holds on `k` at `now`. Stock alerts hold whether or not the
    kiosk is online: what it last reported is what field staff will find."""
    found: list[Finding] = []

    def add(kind: AlertKind, message: str, slot_no: int = WHOLE_KIOSK) -> None:
        found.append(Finding(AlertKey(k.kiosk_id, kind, slot_no), k.partner_id, message))

    if not k.online and now - k.offline_since > t.offline_after:
        add(AlertKind.OFFLINE, f"offline for {_minutes(now - k.offline_since)} min")
    if k.umbrellas <= t.nearly_empty_max:
        add(AlertKind.NEARLY_EMPTY, f"{k.umbrellas} umbrella(s) left")
    if k.free_slots <= t.nearly_full_max_free:
        add(AlertKind.NEARLY_FULL, f"{k.free_slots} free slot(s) left")
    for slot in k.faulty:
        if slot.since is not None and now - slot.since > t.slot_fault_after:
            add(
                AlertKind.SLOT_FAULTY,
                f"slot {slot.slot_no} faulty for {_minutes(now - slot.since)} min",
                slot.slot_no,
            )
    return found


@dataclass(frozen=True, slots=True)
class Reconciliation:
    to_open: list[Finding]
    #: Ids of open alerts whose condition cleared.
    to_close: list[int]


def reconcile(found: Iterable[Finding], open_alerts: Mapping[AlertKey, int]) -> Reconciliation:
    """Open what holds and is not open yet; close what is open and no longer holds. An alert
    that stays true stays the same alert (its opening time and acknowledgement kept)."""
    holding = {f.key: f for f in found}
    return Reconciliation(
        to_open=[holding[k] for k in sorted(holding) if k not in open_alerts],
        to_close=sorted(i for k, i in open_alerts.items() if k not in holding),
    )
