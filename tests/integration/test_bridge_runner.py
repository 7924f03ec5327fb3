"""A whole bridge against the real Mosquitto: messages in, state out, acks only after commit."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from firmware_protocol import encode, topic_for, topics
from firmware_protocol.messages import Heartbeat, MsgType, Online, SlotState
from server.bridge.runner import Bridge, run_bridge
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import MemorySharedState
from server.models import KioskState, RejectedUplink, Slot
from tests.integration.rows import add_kiosks
from tests.services import MOSQUITTO_HOST, require

PORT = 1883


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def forget_session(client_id: str) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect(MOSQUITTO_HOST, PORT)
    c.loop_start()
    c.disconnect()
    c.loop_stop()


class KioskClient:
    def __init__(self, kiosk_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=kiosk_id)
        self.client.connect(MOSQUITTO_HOST, PORT)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def names(db: Database) -> Iterator[tuple[str, str, str]]:
    """(kiosk id, bridge client id, shared-subscription group), unique per test."""
    require("Mosquitto", MOSQUITTO_HOST, PORT)
    u = uuid.uuid4().hex[:10]
    kiosk_id, bridge_id = f"KR{u}", f"bridge-r-{u}"
    add_kiosks(db, kiosk_id)
    yield kiosk_id, bridge_id, f"g{u}"
    forget_session(bridge_id)


def test_run_bridge_applies_what_kiosks_publish_and_rejects_garbage(
    db: Database, names: tuple[str, str, str]
) -> None:
    kiosk_id, bridge_id, group = names
    settings = Settings(
        database_url=db.url,
        redis_url="",
        mqtt_host=MOSQUITTO_HOST,
        mqtt_port=PORT,
        embedded_broker=False,
        bridge_id=bridge_id,
        bridge_group=group,
    )
    stop = threading.Event()
    runner = threading.Thread(target=run_bridge, args=(settings,), kwargs={"stop_event": stop})
    runner.start()
    kiosk = KioskClient(kiosk_id)
    try:
        now = clock.now_ms()
        heartbeat = Heartbeat(kiosk_id, 1, now, -80, (SlotState(tag=b"\x01\x02\x03\x04"),))

        def applied() -> bool:
            with db.transaction() as s:
                state = s.get(KioskState, kiosk_id)
                rejected = s.scalars(select(RejectedUplink.reason)).all()
                ok = state is not None and (state.max_seq, state.conn) == (1, 1)
                return ok and "not_cbor" in rejected

        def publish_until_applied() -> bool:
            # Until the bridge has subscribed, the broker drops what nobody subscribes to;
            # republishing is harmless (Online is idempotent, the heartbeat a duplicate).
            online = encode(Online(kiosk_id, 0, now, 1))
            kiosk.publish(topics.uplink(kiosk_id, MsgType.ONLINE), online)
            kiosk.publish(topic_for(heartbeat), encode(heartbeat))
            kiosk.publish(topics.uplink(kiosk_id, MsgType.SLOT_EVENT), b"garbage")
            return wait_for(applied, timeout_s=0.5)

        assert wait_for(publish_until_applied, timeout_s=15)
    finally:
        kiosk.close()
        stop.set()
        runner.join(15)
    assert not runner.is_alive()
    with db.transaction() as s:
        state = s.get(KioskState, kiosk_id)
        assert state is not None
        assert (state.online, state.conn, state.signal_dbm) == (True, 1, -80)
        slot = s.get(Slot, (kiosk_id, 1))
        assert slot is not None
        assert slot.tag == "01020304"


def test_message_received_but_not_committed_is_redelivered_to_the_restarted_bridge(
    db: Database, names: tuple[str, str, str]
) -> None:
    kiosk_id, bridge_id, group = names
    settings = Settings(
        mqtt_host=MOSQUITTO_HOST, mqtt_port=PORT, embedded_broker=False, bridge_group=group
    )

    def bridge() -> Bridge:
        return Bridge(
            settings,
            db=db,
            shared_state=MemorySharedState(),
            shared=True,
            client_id=bridge_id,
            uplink_filter=f"{topics.ROOT}/{kiosk_id}/up/+",
        )

    crashed = bridge()
    crashed.connection.start()  # receives, but its worker never runs: nothing is acked
    kiosk = KioskClient(kiosk_id)
    try:
        assert crashed.connection.wait_ready(10)
        heartbeat = Heartbeat(kiosk_id, 7, clock.now_ms(), -60, (SlotState(),))
        kiosk.publish(topic_for(heartbeat), encode(heartbeat))
        assert wait_for(lambda: crashed.dispatcher.inbox.qsize() == 1)
        crashed.connection.stop()

        restarted = bridge()
        restarted.start()
        try:
            assert wait_for(lambda: restarted.dispatcher.stats().get("applied", 0) == 1)
        finally:
            restarted.stop()
    finally:
        kiosk.close()
    with db.transaction() as s:
        state = s.get(KioskState, kiosk_id)
        assert state is not None
        assert state.max_seq == 7
