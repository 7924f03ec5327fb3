"""Simulated kiosks over a real Mosquitto (127.0.0.1:1883, anonymous allowed there)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from device_sim import LEAVE, Fleet
from device_sim.credentials import generated_credentials
from firmware_protocol import decode_uplink, encode, topic_for
from firmware_protocol.messages import (
    Boot,
    CmdOp,
    CmdResult,
    CmdStatus,
    Command,
    Heartbeat,
    Offline,
    Online,
    SlotEvent,
    SlotEventKind,
    UplinkMessage,
)
from tests.services import require

HOST, PORT = "127.0.0.1", 1883


class Cloud:
    """A stand-in for the bridge: records every uplink of one test's kiosks."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lock = threading.Lock()
        self.got: list[UplinkMessage] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"cloud-{prefix}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.on_message = self._on_message
        self.client.connect(HOST, PORT)
        self.client.subscribe("umb/1/+/up/+", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, m: mqtt.MQTTMessage) -> None:
        if m.topic.split("/")[2].startswith(self.prefix):
            msg = decode_uplink(m.topic, bytes(m.payload))  # raises if not decodable
            with self.lock:
                self.got.append(msg)

    def of(self, kiosk_id: str) -> list[UplinkMessage]:
        with self.lock:
            return [m for m in self.got if m.kiosk_id == kiosk_id]

    def wait(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    def send(self, msg: Command) -> None:
        self.client.publish(topic_for(msg), encode(msg), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    require("Mosquitto", HOST, PORT)
    return f"t{uuid.uuid4().hex[:8]}x"


@pytest.fixture
def cloud(prefix: str) -> Iterator[Cloud]:
    c = Cloud(prefix)
    yield c
    c.close()


def test_fifty_kiosks_connect_and_send_online_boot_and_heartbeats(
    prefix: str, cloud: Cloud
) -> None:
    creds = generated_credentials(50, prefix)
    with Fleet(creds, HOST, PORT, heartbeat_s=1, seed=7) as fleet:
        fleet.wait_all_online(timeout=20)
        ids = fleet.kiosk_ids

        def every_kiosk_heartbeat_twice() -> bool:
            return all(sum(isinstance(m, Heartbeat) for m in cloud.of(k)) >= 2 for k in ids)

        cloud.wait(every_kiosk_heartbeat_twice)
        stats = fleet.stats()
        assert stats.connected == 50
        assert stats.auth_failures == 0
        assert stats.loop_errors == 0
    for kiosk_id in ids:
        msgs = cloud.of(kiosk_id)
        assert [type(m) for m in msgs[:3]] == [Online, Boot, Heartbeat]
        online, boot, hb = msgs[:3]
        assert isinstance(online, Online)
        assert isinstance(boot, Boot)
        assert isinstance(hb, Heartbeat)
        assert online.conn == boot.conn == 1
        assert len(hb.slots) == 22
        assert 14 <= sum(s.tag is not None for s in hb.slots) <= 18
        seqs = [m.seq for m in msgs if not isinstance(m, Online | Offline)]
        assert seqs == list(range(1, len(seqs) + 1))  # no faults: in order, no gaps
    cloud.wait(lambda: all(isinstance(cloud.of(k)[-1], Offline) for k in ids))


def test_a_dropped_kiosk_buffers_and_replays_in_order_after_its_will(
    prefix: str, cloud: Cloud
) -> None:
    creds = generated_credentials(3, prefix)
    with Fleet(creds, HOST, PORT, heartbeat_s=1) as fleet:
        fleet.wait_all_online(timeout=20)
        k = fleet.kiosk(creds[0].kiosk_id)
        k.wait_drained()
        k.disconnect()
        cloud.wait(lambda: any(isinstance(m, Offline) for m in cloud.of(k.kiosk_id)))
        [will] = [m for m in cloud.of(k.kiosk_id) if isinstance(m, Offline)]
        assert will.conn == 1
        slot = k.empty_slots()[0]
        k.insert_umbrella(slot, b"\xaa" * 8)
        time.sleep(2.5)  # heartbeats while offline
        k.remove_umbrella(slot)
        pending = k.pending()
        assert len(pending) >= 4
        assert [m.seq for m in pending] == sorted(m.seq for m in pending)
        seen_before = len(cloud.of(k.kiosk_id))
        k.reconnect()
        k.wait_drained()
        cloud.wait(lambda: len(cloud.of(k.kiosk_id)) >= seen_before + len(pending) + 2)
        after = cloud.of(k.kiosk_id)[seen_before:]
        assert isinstance(after[0], Online)
        assert after[0].conn == 2
        # replayed right after Online: same messages, same order, original seq and ts
        assert after[1 : 1 + len(pending)] == pending
        live = after[1 + len(pending)]
        assert isinstance(live, Heartbeat)
        assert live.seq > pending[-1].seq
        kinds = [m.kind for m in pending if isinstance(m, SlotEvent)]
        assert kinds == [SlotEventKind.INSERTED, SlotEventKind.REMOVED]


def test_unlock_commands_over_the_broker_get_results(prefix: str, cloud: Cloud) -> None:
    creds = generated_credentials(1, prefix)
    with Fleet(creds, HOST, PORT, heartbeat_s=30, unlock_window_s=1) as fleet:
        fleet.wait_all_online(timeout=20)
        k = fleet.kiosk(creds[0].kiosk_id)
        full = sorted(k.umbrellas())
        now = int(time.time() * 1000)
        k.set_rider(LEAVE)
        cloud.send(Command(k.kiosk_id, 0, now, "c-left", CmdOp.UNLOCK, now + 30_000, full[0]))
        res = k.wait_result("c-left", timeout=10)
        assert (res.status, res.slot) == (CmdStatus.NOT_TAKEN, full[0])
        cloud.send(Command(k.kiosk_id, 0, now, "c-old", CmdOp.UNLOCK, now - 1, full[1]))
        assert k.wait_result("c-old").status is CmdStatus.EXPIRED

        def result_seen(cmd_id: str) -> bool:
            msgs = cloud.of(k.kiosk_id)
            return any(isinstance(m, CmdResult) and m.cmd_id == cmd_id for m in msgs)

        cloud.wait(lambda: result_seen("c-left") and result_seen("c-old"))


def test_duplicate_fault_publishes_sequenced_uplinks_twice(prefix: str, cloud: Cloud) -> None:
    creds = generated_credentials(1, prefix)
    fleet = Fleet(creds, HOST, PORT, heartbeat_s=1)
    k = fleet.kiosk(creds[0].kiosk_id)
    k.set_faults(dup=1.0)  # before start: handles work on a fleet that is not running yet
    with fleet:
        fleet.wait_all_online(timeout=20)
        cloud.wait(lambda: sum(isinstance(m, Heartbeat) for m in cloud.of(k.kiosk_id)) >= 4)
    seqs = [m.seq for m in cloud.of(k.kiosk_id) if not isinstance(m, Online | Offline)]
    assert seqs[:4] == [1, 1, 2, 2]


def test_cli_runs_a_fleet_and_a_scenario_for_a_set_duration(
    prefix: str, cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    from device_sim.cli import main

    common = ["--count", "4", "--prefix", prefix, "--host", HOST, "--port", str(PORT)]
    assert main(["fleet", *common, "--heartbeat-s", "1", "--duration", "2.5"]) == 0
    assert "4/4 connected" in capsys.readouterr().out
    ids = [f"{prefix}{i:04d}" for i in range(1, 5)]
    assert all(any(isinstance(m, Heartbeat) for m in cloud.of(k)) for k in ids)
    assert main(["scenario", "churn", *common, "--duration", "2", "--faults", "dup=0.5"]) == 0
    assert main(["fleet", *common, "--faults", "bogus=1"]) == 2
