"""A rebalancing task carried out on simulated kiosks (issue 5): field staff take umbrellas
out of one kiosk and put them into another, the kiosks report the slot events through the
broker and the bridge, and the partner's dashboard and the task show the restock."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from server.accounts import service as accounts
from server.models import Partner, Role
from tests.accounts_env import log_in
from tests.e2e.conftest import Stack
from tests.services import eventually

MOVED = 3


def _tiles(stack: Stack, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    r = stack.api.get("/api/v1/partner/dashboard", headers=headers)
    assert r.status_code == 200, r.text
    return {k["id"]: k for k in r.json()["kiosks"]}


def test_umbrellas_moved_between_kiosks_show_on_the_dashboard_and_the_task(stack: Stack) -> None:
    with stack.db.transaction() as s:
        partner_id = s.scalars(select(Partner.id)).one()
        accounts.create_user(
            s,
            login="field-lead",
            password="pw-field-lead",
            role=Role.PARTNER,
            partner_id=partner_id,
        )
    headers = log_in(stack.api, "field-lead", "pw-field-lead")
    fleet = stack.start_fleet(stack.credentials[:2], heartbeat_s=1)
    fleet.wait_all_online(timeout=30)
    a, b = (fleet.kiosk(k) for k in fleet.kiosk_ids)

    def synced() -> dict[str, dict[str, Any]]:
        tiles = _tiles(stack, headers)
        for h in (a, b):
            assert tiles[h.kiosk_id]["online"] is True
            assert tiles[h.kiosk_id]["umbrellas"] == len(h.umbrellas())
        return tiles

    before = eventually(synced, timeout_s=30)
    assert len(a.umbrellas()) >= MOVED
    assert len(b.empty_slots()) >= MOVED

    created = stack.api.post(
        "/api/v1/partner/rebalancing/tasks",
        json={"from_kiosk_id": a.kiosk_id, "to_kiosk_id": b.kiosk_id, "quantity": MOVED},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]

    tags = [a.remove_umbrella(slot) for slot in sorted(a.umbrellas())[:MOVED]]
    for slot, tag in zip(b.empty_slots(), tags, strict=False):
        b.insert_umbrella(slot, tag)

    def restocked() -> None:
        tiles = _tiles(stack, headers)
        assert tiles[a.kiosk_id]["umbrellas"] == before[a.kiosk_id]["umbrellas"] - MOVED
        assert tiles[b.kiosk_id]["umbrellas"] == before[b.kiosk_id]["umbrellas"] + MOVED

    eventually(restocked, timeout_s=30)
    done = stack.api.post(f"/api/v1/partner/rebalancing/tasks/{task_id}/done", headers=headers)

    assert done.status_code == 200, done.text
    observed = done.json()["observed"]
    assert observed["from"] == {
        "kiosk_id": a.kiosk_id,
        "removed": MOVED,
        "inserted": 0,
        "umbrellas_now": before[a.kiosk_id]["umbrellas"] - MOVED,
    }
    assert observed["to"] == {
        "kiosk_id": b.kiosk_id,
        "removed": 0,
        "inserted": MOVED,
        "umbrellas_now": before[b.kiosk_id]["umbrellas"] + MOVED,
    }
