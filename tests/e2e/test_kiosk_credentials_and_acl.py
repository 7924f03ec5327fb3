"""Per-kiosk credentials and topic ACL, proven through what the API shows (SPEC §1: each kiosk
has its own credentials and may publish only on its own topics; firmware_protocol SPEC §3:
the cloud also checks the payload's kiosk id against the topic's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from device_sim.credentials import KioskCredential
from device_sim.kiosk import SLOT_COUNT
from firmware_protocol import encode, topic_for, topics
from firmware_protocol.messages import Heartbeat, MsgType, Offline, SlotState
from server.core.clock import clock
from server.models import RejectedUplink
from tests.e2e.conftest import KioskImpostor, Stack, api_slots, sim_slots
from tests.services import eventually


@pytest.fixture
def impostor(stack: Stack) -> Iterator[KioskImpostor]:
    """Logged in as the last registered kiosk, which no simulated fleet uses."""
    client = KioskImpostor(stack.port, stack.credentials[-1])
    yield client
    client.close()


def test_kiosk_with_a_wrong_password_is_refused_and_never_shows_online(stack: Stack) -> None:
    good, victim = stack.credentials[0], stack.credentials[1]
    fleet = stack.start_fleet(
        [good, KioskCredential(victim.kiosk_id, "not-" + victim.password)], heartbeat_s=1
    )
    fleet.kiosk(good.kiosk_id).wait_online()

    def refused() -> None:
        assert fleet.stats().auth_failures >= 1, fleet.stats()

    eventually(refused)

    def good_one_online() -> None:
        body = stack.kiosk(good.kiosk_id)
        assert body["online"] is True
        assert body["last_seen_at"] is not None

    # The bridge is clearly listening: the kiosk with its own password is online and
    # heart-beating every second, meanwhile the refused one stays invisible.
    eventually(good_one_online)
    assert not fleet.kiosk(victim.kiosk_id).online
    body = stack.kiosk(victim.kiosk_id)
    assert body["online"] is False
    assert body["last_seen_at"] is None
    assert body["firmware"] is None
    assert {s["status"] for s in body["slots"]} == {"empty"}
    assert body["umbrellas"] == 0


def test_kiosk_cannot_speak_for_another_kiosk_on_its_topic_nor_in_its_payload(
    stack: Stack, impostor: KioskImpostor
) -> None:
    b = stack.credentials[0]
    a = stack.credentials[-1]
    fleet = stack.start_fleet([b], heartbeat_s=60)
    kb = fleet.kiosk(b.kiosk_id)
    kb.wait_online()

    def b_matches() -> None:
        body = stack.kiosk(b.kiosk_id)
        assert body["online"] is True
        assert api_slots(body) == sim_slots(kb)

    eventually(b_matches)
    assert not impostor.connack().is_failure

    now = clock.now_ms()
    # Claims every slot of B empty with a seq far beyond B's, so that, were it applied, B's
    # own later heartbeats (lower seq) could never correct it; and B's Last Will.
    forged_hb = Heartbeat(b.kiosk_id, 4_000_000_000, now, -1, (SlotState(),) * SLOT_COUNT)
    forged_will = Offline(b.kiosk_id, 0, now, 1_000_000)
    # 1. On B's topics: the broker's ACL must drop them (acknowledged, never delivered).
    impostor.publish(topic_for(forged_hb), encode(forged_hb))
    impostor.publish(topic_for(forged_will), encode(forged_will))
    # 2. On A's own topic, with B's id inside: the bridge must reject it (wrong_kiosk).
    impostor.publish(topics.uplink(a.kiosk_id, MsgType.HEARTBEAT), encode(forged_hb))
    # 3. A marker A may send: once the API shows it, anything sent before it was processed.
    marker = Heartbeat(a.kiosk_id, 1, now, -42, (SlotState(tag=b"\xa1\xa2\xa3\xa4"),))
    impostor.publish(topic_for(marker), encode(marker))

    def marker_applied() -> None:
        body = stack.kiosk(a.kiosk_id)
        assert body["signal_dbm"] == -42
        assert body["slots"][0]["tag"] == "A1A2A3A4"

    eventually(marker_applied)

    body = stack.kiosk(b.kiosk_id)
    assert body["online"] is True, "a forged Last Will took B offline"
    assert body["signal_dbm"] != -1, "a forged heartbeat reached B's state"
    assert api_slots(body) == sim_slots(kb), "a forged heartbeat changed B's slots"

    with stack.db.transaction() as s:
        reasons = list(s.scalars(select(RejectedUplink.reason)))
    assert reasons == ["wrong_kiosk"], reasons

    # B's own next heartbeat still gets through: B's stream was not poisoned.
    kb.heartbeat()
    eventually(b_matches)
