"""Commands through the real Mosquitto: two bridges share the uplink subscription, a third
process-like sender (no subscription at all) still gets every answer, through Redis."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from firmware_protocol import decode_downlink, encode, topics
from firmware_protocol.messages import CmdOp, CmdResult, CmdStatus, Command, MsgType
from server.bridge.commands import CommandChannel
from server.bridge.connection import BridgeConnection
from server.bridge.runner import Bridge
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import RedisSharedState
from server.models import CommandRecord
from tests.integration.rows import add_kiosks
from tests.services import MOSQUITTO_HOST, eventually, require

PORT = 1883


class FakeKiosk:
    """A plain paho client standing in for the firmware: answers every unlock with TAKEN."""

    def __init__(self, kiosk_id: str) -> None:
        self.kiosk_id = kiosk_id
        self.answering = True
        self.received: list[Command] = []
        self._seq = itertools.count(100)
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=kiosk_id)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message

    def start(self) -> None:
        self.client.connect(MOSQUITTO_HOST, PORT)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(topics.downlink_filter(self.kiosk_id), qos=1)

    def _on_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        command = decode_downlink(msg.topic, bytes(msg.payload))
        assert isinstance(command, Command)
        self.received.append(command)
        if not self.answering:
            return
        result = CmdResult(
            self.kiosk_id,
            next(self._seq),
            clock.now_ms(),
            command.cmd_id,
            CmdStatus.TAKEN,
            slot=command.slot,
            tag=bytes.fromhex("c0ffee00"),
        )
        client.publish(topics.uplink(self.kiosk_id, MsgType.CMD_RESULT), encode(result), qos=1)


@dataclass
class Rig:
    kiosk: FakeKiosk
    bridges: list[Bridge]
    channel: CommandChannel
    db: Database


def _forget_session(client_id: str) -> None:
    """Drop the persistent session a test client left on the shared broker."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect(MOSQUITTO_HOST, PORT)
    c.loop_start()
    c.disconnect()
    c.loop_stop()


@pytest.fixture
def rig(db: Database, redis_url: str) -> Iterator[Rig]:
    require("Mosquitto", MOSQUITTO_HOST, PORT)
    u = uuid.uuid4().hex[:10]
    kiosk_id = f"KC{u}"
    add_kiosks(db, kiosk_id)

    namespace = f"t{u}"
    settings = Settings(
        mqtt_host=MOSQUITTO_HOST,
        mqtt_port=PORT,
        embedded_broker=False,
        bridge_group=f"g{u}",
        redis_url=redis_url,
    )
    bridge_ids = [f"bridge-a-{u}", f"bridge-b-{u}"]
    states = [RedisSharedState(redis_url, namespace=namespace) for _ in range(3)]
    bridges = [
        Bridge(
            settings,
            db=db,
            shared_state=state,
            shared=True,
            client_id=bid,
            # Only this test's kiosk, so concurrent tests on the broker do not cross.
            uplink_filter=f"{topics.ROOT}/{kiosk_id}/up/+",
        )
        for bid, state in zip(bridge_ids, states, strict=False)
    ]
    sender_id = f"api-{u}"
    publisher = BridgeConnection(settings, client_id=sender_id, subscribe=False)
    kiosk = FakeKiosk(kiosk_id)
    started: list[Bridge] = []
    try:
        for b in bridges:
            b.start()
            started.append(b)
        publisher.start()
        kiosk.start()
        assert all(b.connection.wait_ready(10) for b in bridges)
        assert publisher.wait_ready(10)
        assert kiosk.subscribed.wait(10)
        yield Rig(kiosk, bridges, CommandChannel(publisher, states[2], db), db)
    finally:
        kiosk.stop()
        publisher.stop()
        for b in started:
            b.stop()
        for client_id in [*bridge_ids, sender_id]:
            _forget_session(client_id)
        for state in states:
            state.close()


def test_answers_reach_the_sender_whichever_bridge_receives_them(rig: Rig) -> None:
    results = [
        rig.channel.send(rig.kiosk.kiosk_id, CmdOp.UNLOCK, slot=n, timeout_s=10)
        for n in range(1, 7)
    ]

    assert all(r is not None and r.status is CmdStatus.TAKEN for r in results)
    assert [r.slot for r in results if r is not None] == [1, 2, 3, 4, 5, 6]
    assert [c.cmd_id for c in rig.kiosk.received] == [r.cmd_id for r in results if r]

    def recorded() -> None:
        # The sender gets each answer before its bridge's batch commits; the record follows.
        handled = [b.dispatcher.stats().get("applied", 0) for b in rig.bridges]
        assert sum(handled) == 6
        assert all(n > 0 for n in handled), handled  # the broker spread the answers over both
        with rig.db.transaction() as s:
            statuses = s.scalars(select(CommandRecord.status)).all()
            assert statuses == ["taken"] * 6

    eventually(recorded, timeout_s=10)


def test_unanswered_command_times_out_and_is_recorded_as_such(rig: Rig) -> None:
    rig.kiosk.answering = False

    result = rig.channel.send(rig.kiosk.kiosk_id, CmdOp.UNLOCK, slot=3, timeout_s=0.5)

    assert result is None
    (command,) = rig.kiosk.received
    assert command.op is CmdOp.UNLOCK
    assert command.slot == 3
    assert command.expires_ms > clock.now_ms()
    with rig.db.transaction() as s:
        record = s.get(CommandRecord, command.cmd_id)
        assert record is not None
        assert record.status == "timeout"
