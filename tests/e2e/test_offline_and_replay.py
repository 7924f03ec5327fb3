"""Presence and the offline buffer end to end (SPEC §1: Last Will for presence; a kiosk that
was offline replays what it buffered with its original timestamps and sequence numbers;
firmware_protocol SPEC §6, §7)."""

from __future__ import annotations

from sqlalchemy import select

from device_sim.kiosk import tag_for
from firmware_protocol.messages import SlotEvent
from server.core.clock import clock, from_ms, to_ms
from server.kiosk_state.jobs import mark_silent_kiosks_offline
from server.models import SlotEventRecord
from tests.e2e.conftest import Stack, api_slots, sim_slots
from tests.services import eventually


def test_dropped_kiosk_shows_offline_then_replays_its_buffered_slot_events_once_with_kiosk_time(
    stack: Stack,
) -> None:
    # A long heartbeat: between the drop and the replay only slot events change the slots.
    fleet = stack.start_fleet(stack.credentials[:3], heartbeat_s=60)
    fleet.wait_all_online()
    k = fleet.kiosk(fleet.kiosk_ids[0])

    def matches_and_online() -> None:
        body = stack.kiosk(k.kiosk_id)
        assert body["online"] is True
        assert api_slots(body) == sim_slots(k)

    eventually(matches_and_online)
    before = api_slots(stack.kiosk(k.kiosk_id))

    k.drop(offline_s=600)  # no DISCONNECT: the broker publishes the Last Will
    k.wait_offline()

    def offline_in_api() -> None:
        assert stack.kiosk(k.kiosk_id)["online"] is False, "the Last Will did not reach the API"

    eventually(offline_in_api)

    # While offline, riders return and staff take umbrellas out; the kiosk buffers it all.
    full, empty = sorted(k.umbrellas()), k.empty_slots()
    returned = tag_for("returned", 1)
    swapped = tag_for("swapped", 2)
    k.insert_umbrella(empty[0], returned)  # a return into an empty slot
    k.remove_umbrella(full[0])  # taken out
    k.remove_umbrella(full[1])  # taken out, then another umbrella put into the same slot
    k.insert_umbrella(full[1], swapped)
    k.heartbeat()  # a buffered snapshot too
    assert k.buffered >= 5, "the simulator should have buffered what happened offline"
    assert not k.online

    body = stack.kiosk(k.kiosk_id)
    assert body["online"] is False
    assert api_slots(body) == before, "nothing buffered offline may reach the API before replay"

    reconnect_ms = clock.now_ms()
    k.reconnect()
    k.wait_online()
    eventually(matches_and_online)
    k.wait_drained()

    sent = [m for m in k.uplinks() if isinstance(m, SlotEvent)]
    assert len(sent) == 4
    assert all(m.ts_ms < reconnect_ms for m in sent), "the events happened while offline"

    def history_complete() -> list[SlotEventRecord]:
        with stack.db.transaction() as s:
            rows = list(
                s.scalars(
                    select(SlotEventRecord)
                    .where(SlotEventRecord.kiosk_id == k.kiosk_id)
                    .order_by(SlotEventRecord.seq)
                )
            )
        assert len(rows) >= len(sent)
        return rows

    rows = eventually(history_complete)
    assert [r.seq for r in rows] == [m.seq for m in sent], "every event recorded exactly once"
    for row, m in zip(rows, sent, strict=True):
        assert m.tag is not None
        assert (row.slot_no, row.kind, row.tag) == (m.slot, m.kind.value, m.tag.hex().upper())
        # The kiosk's own timestamp, not the replay's arrival time.
        assert row.kiosk_time == from_ms(m.ts_ms)
        assert to_ms(row.received_at) >= reconnect_ms > m.ts_ms

    # The other kiosks never noticed.
    for other in fleet.kiosk_ids[1:]:
        assert stack.kiosk(other)["online"] is True


def test_silent_kiosk_is_marked_offline_by_the_job_and_online_again_by_its_next_heartbeat(
    stack: Stack,
) -> None:
    """A stuck modem sends no Will (firmware_protocol SPEC §6): silence alone ends presence,
    and the next uplink of the same connection brings the kiosk back."""
    fleet = stack.start_fleet(stack.credentials[:2], heartbeat_s=60)
    fleet.wait_all_online()
    quiet, talker = (fleet.kiosk(i) for i in fleet.kiosk_ids)

    def both_online() -> None:
        for h in (quiet, talker):
            assert stack.kiosk(h.kiosk_id)["online"] is True

    eventually(both_online)

    timeout_s = 1

    def job_marks_both_offline() -> None:
        with stack.db.transaction() as s:
            mark_silent_kiosks_offline(s, clock.now(), timeout_s, shared_state=stack.shared_state)
        for h in (quiet, talker):
            assert stack.kiosk(h.kiosk_id)["online"] is False, f"{h.kiosk_id} still online"

    # Both kiosks stay connected but send nothing for a minute; poll the job until their
    # silence exceeds the (test-sized) timeout.
    eventually(job_marks_both_offline, timeout_s=10, interval_s=0.3)
    assert quiet.online, "the kiosk never lost its MQTT connection"
    assert talker.online, "the kiosk never lost its MQTT connection"

    talker.heartbeat()

    def talker_back_online() -> None:
        assert stack.kiosk(talker.kiosk_id)["online"] is True

    eventually(talker_back_online)
    assert stack.kiosk(quiet.kiosk_id)["online"] is False


def test_uplinks_sent_while_the_bridge_restarts_are_applied_by_the_restarted_bridge(
    stack: Stack,
) -> None:
    """The broker acknowledges a kiosk's uplink and drops it from the kiosk's buffer even
    while no bridge is connected; the bridge's persistent session (clean_session=0, fixed
    client id) must hold it until the bridge is back (server/broker/mosquitto.conf:
    max_queued_messages sized for a bridge restart)."""
    fleet = stack.start_fleet(stack.credentials[:2], heartbeat_s=60)
    fleet.wait_all_online()
    k = fleet.kiosk(fleet.kiosk_ids[0])

    def matches() -> None:
        body = stack.kiosk(k.kiosk_id)
        assert body["online"] is True
        assert api_slots(body) == sim_slots(k), "slots differ from the kiosk's"

    eventually(matches)

    def while_the_bridge_is_down() -> None:
        full, empty = sorted(k.umbrellas()), k.empty_slots()
        k.insert_umbrella(empty[0], tag_for("during-restart", 1))
        k.remove_umbrella(full[0])
        k.wait_drained()  # the broker has acknowledged them: the kiosk forgot them

    stack.restart_bridge(down=while_the_bridge_is_down)

    def events_recorded() -> None:
        with stack.db.transaction() as s:
            kinds = list(
                s.scalars(
                    select(SlotEventRecord.kind)
                    .where(SlotEventRecord.kiosk_id == k.kiosk_id)
                    .order_by(SlotEventRecord.seq)
                )
            )
        assert kinds == ["in", "out"], (
            f"slot events the broker acknowledged while the bridge restarted were lost "
            f"(recorded: {kinds}): the bridge's persistent session must keep its subscription"
        )

    eventually(events_recorded, timeout_s=10)
    eventually(matches)
