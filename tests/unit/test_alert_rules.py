"""Alert rules (server/alerts/rules.py): which conditions hold, what opens and closes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from server.alerts.rules import (
    AlertKey,
    FaultySlot,
    Finding,
    KioskCondition,
    Thresholds,
    findings,
    reconcile,
)
from server.models.operations import AlertKind

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
T = Thresholds(
    offline_after=timedelta(minutes=10),
    nearly_empty_max=2,
    nearly_full_max_free=2,
    slot_fault_after=timedelta(minutes=30),
)
HEALTHY = KioskCondition(
    kiosk_id="K000001",
    partner_id=1,
    online=True,
    offline_since=NOW - timedelta(days=1),
    umbrellas=10,
    free_slots=12,
)


def _kinds(k: KioskCondition) -> list[tuple[AlertKind, int]]:
    return [(f.key.kind, f.key.slot_no) for f in findings(k, NOW, T)]


def test_a_healthy_kiosk_raises_nothing() -> None:
    assert _kinds(HEALTHY) == []


def test_a_kiosk_offline_longer_than_the_threshold_raises_offline() -> None:
    k = replace(HEALTHY, online=False, offline_since=NOW - timedelta(minutes=12))
    (found,) = findings(k, NOW, T)
    assert found.key == AlertKey("K000001", AlertKind.OFFLINE)
    assert found.message == "offline for 12 min"


def test_a_kiosk_offline_for_less_than_the_threshold_raises_nothing_yet() -> None:
    k = replace(HEALTHY, online=False, offline_since=NOW - timedelta(minutes=10))
    assert _kinds(k) == []


def test_two_umbrellas_left_is_nearly_empty_and_three_is_not() -> None:
    assert _kinds(replace(HEALTHY, umbrellas=2)) == [(AlertKind.NEARLY_EMPTY, 0)]
    assert _kinds(replace(HEALTHY, umbrellas=3)) == []


def test_two_free_slots_left_is_nearly_full() -> None:
    assert _kinds(replace(HEALTHY, free_slots=2)) == [(AlertKind.NEARLY_FULL, 0)]


def test_only_slots_faulty_for_longer_than_the_threshold_raise_an_alert_each() -> None:
    k = replace(
        HEALTHY,
        faulty=(
            FaultySlot(3, NOW - timedelta(minutes=31)),
            FaultySlot(4, NOW - timedelta(minutes=5)),
            FaultySlot(7, NOW - timedelta(hours=2)),
        ),
    )
    assert _kinds(k) == [(AlertKind.SLOT_FAULTY, 3), (AlertKind.SLOT_FAULTY, 7)]


def test_stock_alerts_hold_for_an_offline_kiosk_too() -> None:
    k = replace(HEALTHY, online=False, offline_since=NOW - timedelta(hours=1), umbrellas=0)
    assert _kinds(k) == [(AlertKind.OFFLINE, 0), (AlertKind.NEARLY_EMPTY, 0)]


def test_reconcile_opens_new_conditions_and_closes_cleared_ones_keeping_the_rest() -> None:
    still = AlertKey("K1", AlertKind.OFFLINE)
    cleared = AlertKey("K2", AlertKind.NEARLY_EMPTY)
    new = AlertKey("K3", AlertKind.SLOT_FAULTY, 5)
    found = [Finding(still, 1, "offline"), Finding(new, 1, "slot 5 faulty")]
    plan = reconcile(found, {still: 10, cleared: 11})
    assert [f.key for f in plan.to_open] == [new]
    assert plan.to_close == [11]


def test_reconcile_with_nothing_changed_does_nothing() -> None:
    key = AlertKey("K1", AlertKind.OFFLINE)
    plan = reconcile([Finding(key, 1, "offline")], {key: 10})
    assert plan.to_open == []
    assert plan.to_close == []
