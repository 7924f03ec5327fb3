"""Scenarios act on a fleet; an unstarted fleet lets them run without a broker."""

from __future__ import annotations

from device_sim import Fleet
from device_sim.credentials import generated_credentials
from device_sim.fleet import default_fill
from device_sim.scenarios import (
    Call,
    Churn,
    InsertUmbrella,
    JamSlot,
    Progress,
    RemoveUmbrella,
    StepList,
    run_scenario,
)
from firmware_protocol.messages import Fault, SlotEvent, SlotEventKind


def offline_fleet(n: int = 5) -> Fleet:
    return Fleet(generated_credentials(n, "scn"), "127.0.0.1", 1, seed=1)


def test_default_fill_is_deterministic_with_unique_tags() -> None:
    a, b = default_fill("K0001", seed=1), default_fill("K0001", seed=1)
    assert a == b
    assert 14 <= len(a) <= 18
    tags = [t for k in ("K0001", "K0002") for t in default_fill(k, seed=1).values()]
    assert len(set(tags)) == len(tags)
    assert all(len(t) == 8 for t in tags)


def test_fixed_steps_run_in_time_order_and_report_progress() -> None:
    fleet = offline_fleet(1)
    k = fleet.kiosk(fleet.kiosk_ids[0])
    empty, full = k.empty_slots()[0], sorted(k.umbrellas())[0]
    seen: list[Progress] = []
    scenario = StepList(
        "fixed",
        (
            JamSlot(0.02, k.kiosk_id, full),
            InsertUmbrella(0.0, k.kiosk_id, empty, b"\x42" * 8),
            RemoveUmbrella(0.01, k.kiosk_id, empty),
            Call(0.03, lambda f: "done"),
        ),
    )
    assert run_scenario(fleet, scenario, progress=seen.append) == 4
    assert [p.description.split()[0] for p in seen] == ["insert", "remove", "jam", "done"]
    kinds = [type(m) for m in k.uplinks()]
    assert kinds == [SlotEvent, SlotEvent, Fault]
    fleet.stop()


def test_churn_inserts_and_removes_across_the_fleet() -> None:
    fleet = offline_fleet(5)
    applied = run_scenario(fleet, Churn(duration_s=20, rate=10, drop_share=0.0), speed=1000)
    assert applied > 100
    events = [m for k in fleet for m in k.uplinks() if isinstance(m, SlotEvent)]
    assert {e.kind for e in events} == {SlotEventKind.INSERTED, SlotEventKind.REMOVED}
    for k in fleet:  # the kiosk state stays consistent with what it reported
        assert len(k.umbrellas()) + len(k.empty_slots()) == 22
    fleet.stop()
