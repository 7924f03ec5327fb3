"""A fleet of simulated kiosks comes online and the API shows every slot as the kiosks hold
it (SPEC §1: heartbeat with a full slot snapshot; firmware_protocol SPEC §4.4, §6)."""

from __future__ import annotations

from typing import Any

from device_sim.fleet import KioskHandle
from device_sim.kiosk import FIRMWARE
from firmware_protocol.messages import Heartbeat
from tests.e2e.conftest import CENTER, FLEET_SIZE, Stack, api_slots, sim_slots
from tests.services import eventually


def _signals(handle: KioskHandle) -> set[int]:
    return {m.signal_dbm for m in handle.uplinks() if isinstance(m, Heartbeat)}


def test_every_kiosk_of_a_fleet_shows_online_with_its_slots_as_the_kiosk_holds_them(
    stack: Stack,
) -> None:
    fleet = stack.start_fleet(stack.credentials, heartbeat_s=1)
    fleet.wait_all_online(timeout=30)
    assert len(fleet) == FLEET_SIZE

    def every_kiosk_matches() -> None:
        for handle in fleet:
            body = stack.kiosk(handle.kiosk_id)
            assert body["online"] is True, f"{handle.kiosk_id} not online in the API"
            assert api_slots(body) == sim_slots(handle), f"{handle.kiosk_id} slots differ"
            assert body["firmware"] == FIRMWARE
            assert body["signal_dbm"] in _signals(handle), (
                f"{handle.kiosk_id}: signal {body['signal_dbm']} was never reported"
            )

    eventually(every_kiosk_matches, timeout_s=30)

    # Tags are uppercase hex, exactly the kiosk's bytes.
    sample = fleet.kiosk(fleet.kiosk_ids[0])
    slots = {s["slot_no"]: s for s in stack.kiosk(sample.kiosk_id)["slots"]}
    for n, tag in sample.umbrellas().items():
        assert slots[n]["tag"] == tag.hex().upper()
        assert slots[n]["status"] == "umbrella"

    r = stack.api.get("/api/v1/kiosks", params={"limit": 500})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == FLEET_SIZE
    listed: dict[str, dict[str, Any]] = {item["id"]: item for item in page["items"]}
    assert set(listed) == set(fleet.kiosk_ids)
    for handle in fleet:
        item = listed[handle.kiosk_id]
        assert item["online"] is True, f"{handle.kiosk_id} listed offline"
        assert item["umbrellas"] == len(handle.umbrellas())
        assert item["free_slots"] == len(handle.empty_slots())
        assert item["faulty_slots"] == 0

    r = stack.api.get("/api/v1/kiosks", params={"online": "false"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 0

    for need in ("umbrella", "free_slot"):
        r = stack.api.get(
            "/api/v1/kiosks/nearby",
            params={
                "lat": CENTER[0],
                "lon": CENTER[1],
                "radius_m": 10_000,
                "need": need,
                "limit": 100,
            },
        )
        assert r.status_code == 200, r.text
        assert {i["id"] for i in r.json()["items"]} == set(fleet.kiosk_ids), need
