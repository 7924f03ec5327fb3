"""QoS 1 duplicates and out-of-order delivery through a real broker (SPEC §1: an application
sequence number on every uplink; firmware_protocol SPEC §5: a (kiosk, seq) is applied at
most once, and an older message never overwrites newer state)."""

from __future__ import annotations

from sqlalchemy import func, select

from device_sim.faults import FaultProfile
from device_sim.kiosk import tag_for
from firmware_protocol.messages import SlotEvent
from server.models import SlotEventRecord, UplinkReceipt
from tests.e2e.conftest import Stack, api_slots, sim_slots
from tests.services import eventually


def test_duplicated_and_reordered_uplinks_leave_the_api_equal_to_the_kiosks_and_count_once(
    stack: Stack,
) -> None:
    # Every sequenced uplink is published twice, and every one swaps places with the next.
    # A long heartbeat: after the first snapshot only slot events move the slots, so the
    # final state proves the events were ordered by seq, not by arrival.
    fleet = stack.start_fleet(
        stack.credentials[:3], heartbeat_s=60, faults=FaultProfile(dup=1.0, reorder=1.0)
    )
    fleet.wait_all_online()

    def all_match() -> None:
        for h in fleet:
            body = stack.kiosk(h.kiosk_id)
            assert body["online"] is True, f"{h.kiosk_id} offline"
            assert api_slots(body) == sim_slots(h), f"{h.kiosk_id} slots differ"

    eventually(all_match)

    for i, h in enumerate(fleet):
        full, empty = sorted(h.umbrellas()), h.empty_slots()
        h.insert_umbrella(empty[0], tag_for("return", i))
        h.remove_umbrella(full[0])
        # Out then in on one slot: reordered, the `in` arrives first and must win anyway.
        h.remove_umbrella(full[1])
        h.insert_umbrella(full[1], tag_for("swap", i))
        # In then out on another slot: the `out` arrives first and must win.
        h.insert_umbrella(empty[1], tag_for("brief", i))
        h.remove_umbrella(empty[1])

    eventually(all_match)
    for h in fleet:
        h.wait_drained()

    emitted = {h.kiosk_id: h.seq for h in fleet}
    assert fleet.stats().published >= 2 * sum(emitted.values()), "every uplink went twice"
    events = {
        (h.kiosk_id, m.seq): m for h in fleet for m in h.uplinks() if isinstance(m, SlotEvent)
    }
    assert len(events) == 6 * len(fleet)

    def each_uplink_recorded_once() -> None:
        with stack.db.transaction() as s:
            receipts = dict(
                s.execute(
                    select(UplinkReceipt.kiosk_id, func.count()).group_by(UplinkReceipt.kiosk_id)
                ).all()
            )
            recorded = s.execute(
                select(SlotEventRecord.kiosk_id, SlotEventRecord.seq, func.count()).group_by(
                    SlotEventRecord.kiosk_id, SlotEventRecord.seq
                )
            ).all()
        assert receipts == emitted, "one receipt per sequence number the kiosks used"
        twice = [(k, seq, n) for k, seq, n in recorded if n != 1]
        assert not twice, f"slot events recorded more than once: {twice}"
        assert {(k, seq) for k, seq, _ in recorded} == set(events)

    eventually(each_uplink_recorded_once)

    # Every copy but the first of each sequenced uplink is counted as a duplicate.
    assert stack.bridge is not None
    bridge = stack.bridge

    def duplicates_counted() -> None:
        stats = bridge.dispatcher.stats()
        assert stats.get("duplicates", 0) == sum(emitted.values()), stats

    eventually(duplicates_counted)
    # The shared counters (Redis in production) say the same.
    shared = stack.shared_state.counters("bridge.")
    assert sum(v for k, v in shared.items() if k.endswith(".duplicates")) == sum(
        emitted.values()
    ), shared
