"""Two `umbrella bridge` processes share one subscription (README: "as many as you like")
and a command sent from a third process still gets its answer, whichever bridge decodes it
(server/bridge/commands.py: the result travels through Redis, not through the sender's
own MQTT connection)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from device_sim.credentials import KioskCredential
from device_sim.fleet import Fleet
from device_sim.kiosk import take_after
from firmware_protocol import encode, topic_for
from firmware_protocol.messages import CmdOp, CmdResult, CmdStatus, Heartbeat, Online, SlotState
from server.app import create_app
from server.bridge.commands import CommandChannel
from server.bridge.connection import BridgeConnection
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import RedisSharedState
from server.models import CommandRecord, KioskState, SlotEventRecord, UplinkReceipt
from tests.e2e.conftest import KioskImpostor, api_slots, build_registry, sim_slots, start_mosquitto
from tests.services import eventually

UMBRELLA = Path(sys.executable).with_name("umbrella")


@dataclass
class BridgeProcess:
    bridge_id: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@dataclass
class TwoBridges:
    settings: Settings
    db: Database
    state: RedisSharedState
    commands: CommandChannel
    api: TestClient
    bridges: list[BridgeProcess]
    credentials: list[KioskCredential]
    fleets: list[Fleet] = field(default_factory=list)

    def counters(self) -> dict[str, dict[str, int]]:
        """Per bridge process: its shared counters (`bridge.<bridge_id>.<name>`)."""
        raw = self.state.counters("bridge.")
        return {
            b.bridge_id: {
                k.removeprefix(f"bridge.{b.bridge_id}."): v
                for k, v in raw.items()
                if k.startswith(f"bridge.{b.bridge_id}.")
            }
            for b in self.bridges
        }


def _bridge_env(settings: Settings, bridge_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UMB_")}
    env.update(
        UMB_DATA_DIR=str(settings.data_dir),
        UMB_DATABASE_URL=settings.database_url,
        UMB_REDIS_URL=settings.redis_url,
        UMB_MQTT_HOST=settings.mqtt_host,
        UMB_MQTT_PORT=str(settings.mqtt_port),
        UMB_MQTT_USERNAME=settings.mqtt_username,
        UMB_MQTT_PASSWORD=settings.mqtt_password,
        UMB_EMBEDDED_BROKER="false",
        UMB_BRIDGE_ID=bridge_id,
        UMB_BRIDGE_GROUP=settings.bridge_group,
    )
    return env


@pytest.fixture
def two_bridges(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TwoBridges]:
    """Private Mosquitto + PostgreSQL + Redis, two bridge processes, and in this process
    only a publish-only MQTT connection with a command channel, plus the API."""
    with ExitStack() as es:
        reg = build_registry("production", request, tmp_path)
        es.callback(reg.db.dispose)
        mosquitto = start_mosquitto(reg.settings, es)
        settings = reg.settings.model_copy(update={"mqtt_port": mosquitto.port})

        bridges: list[BridgeProcess] = []
        for n in (1, 2):
            bridge_id = f"{settings.bridge_id}-{n}"
            log_path = tmp_path / f"{bridge_id}.log"
            log = es.enter_context(log_path.open("wb"))
            proc = subprocess.Popen(
                [str(UMBRELLA), "bridge"],
                env=_bridge_env(settings, bridge_id),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            bridge = BridgeProcess(bridge_id, proc, log_path)
            es.callback(bridge.stop)
            bridges.append(bridge)

        state = RedisSharedState(settings.redis_url)
        es.callback(state.close)
        publisher = BridgeConnection(
            settings, subscribe=False, client_id=f"e2e-api-{uuid.uuid4().hex[:8]}"
        )
        publisher.start()
        es.callback(publisher.stop)
        assert publisher.wait_ready(10), "the publish-only connection did not connect"
        api = es.enter_context(TestClient(create_app(settings, db=reg.db)))
        two = TwoBridges(
            settings,
            reg.db,
            state,
            CommandChannel(publisher, state, reg.db),
            api,
            bridges,
            reg.credentials,
        )

        def stop_fleets() -> None:
            for f in two.fleets:
                f.stop()

        es.callback(stop_fleets)
        yield two


def _wait_until_both_bridges_subscribed(two: TwoBridges) -> dict[str, dict[str, int]]:
    """A kiosk no fleet uses sends heartbeats until each bridge has counted one: only then
    is every uplink sure to find a subscriber (Mosquitto drops what nobody subscribes to).
    Returns the per-bridge counters once every probe is counted."""
    probe_id = two.credentials[-1].kiosk_id
    probe = KioskImpostor(two.settings.mqtt_port, two.credentials[-1])
    try:
        assert not probe.connack().is_failure
        seq = 0

        def both_received() -> None:
            nonlocal seq
            seq += 1
            hb = Heartbeat(probe_id, seq, clock.now_ms(), -70, (SlotState(),))
            probe.publish(topic_for(hb), encode(hb))
            for bridge_id, c in two.counters().items():
                assert c.get("received", 0) > 0, f"{bridge_id} has received nothing yet"

        eventually(both_received, timeout_s=30, interval_s=0.2)
    finally:
        probe.close()

    def probes_all_counted() -> dict[str, dict[str, int]]:
        # Probes published before the first subscription are lost; every one after it is
        # delivered, so the applied probes are a contiguous run ending with the last one.
        with two.db.transaction() as s:
            got = set(
                s.scalars(select(UplinkReceipt.seq).where(UplinkReceipt.kiosk_id == probe_id))
            )
        assert got, "no probe applied yet"
        assert got == set(range(min(got), seq + 1)), (sorted(got), seq)
        counters = two.counters()
        assert sum(c.get("received", 0) for c in counters.values()) == len(got), counters
        return counters

    return eventually(probes_all_counted)


def test_command_results_reach_the_sender_whichever_bridge_process_decodes_them(
    two_bridges: TwoBridges,
) -> None:
    two = two_bridges
    before = _wait_until_both_bridges_subscribed(two)

    creds = two.credentials[:16]
    fleet = Fleet(creds, "127.0.0.1", two.settings.mqtt_port, heartbeat_s=60, seed=11)
    two.fleets.append(fleet)
    fleet.start()
    fleet.wait_all_online()

    def all_online() -> None:
        for h in fleet:
            body = two.api.get(f"/api/v1/kiosks/{h.kiosk_id}").json()
            assert body["online"] is True, f"{h.kiosk_id} offline"
            assert api_slots(body) == sim_slots(h), f"{h.kiosk_id} slots differ"

    eventually(all_online)

    handles = list(fleet)
    pings, unlocks = handles[:8], handles[8:]
    unlocked: dict[str, tuple[int, bytes]] = {}
    for h in unlocks:
        h.push_rider(take_after(0.2))
        unlocked[h.kiosk_id] = min(h.umbrellas().items())

    def ping(kiosk_id: str) -> CmdResult | None:
        return two.commands.send(kiosk_id, CmdOp.PING, timeout_s=15)

    def unlock(kiosk_id: str) -> CmdResult | None:
        return two.commands.send(kiosk_id, CmdOp.UNLOCK, unlocked[kiosk_id][0], timeout_s=15)

    with ThreadPoolExecutor(8) as pool:
        ping_results = dict(
            zip(
                [h.kiosk_id for h in pings],
                pool.map(ping, [h.kiosk_id for h in pings]),
                strict=True,
            )
        )
        unlock_results = dict(zip(list(unlocked), pool.map(unlock, list(unlocked)), strict=True))

    missing = [k for k, r in {**ping_results, **unlock_results}.items() if r is None]
    assert not missing, f"no answer reached the sender for {missing}"
    for kiosk_id, r in ping_results.items():
        assert r is not None, kiosk_id
        assert r.status is CmdStatus.OK, (kiosk_id, r)
    for kiosk_id, r in unlock_results.items():
        slot, tag = unlocked[kiosk_id]
        assert r is not None, kiosk_id
        assert (r.status, r.slot, r.tag) == (CmdStatus.TAKEN, slot, tag), kiosk_id

    def unlocked_slots_empty() -> None:
        for h in unlocks:
            body = two.api.get(f"/api/v1/kiosks/{h.kiosk_id}").json()
            slot = unlocked[h.kiosk_id][0]
            assert body["slots"][slot - 1]["status"] == "empty", h.kiosk_id
            assert api_slots(body) == sim_slots(h), h.kiosk_id

    eventually(unlocked_slots_empty)
    for h in fleet:
        h.wait_drained()

    emitted = {h.kiosk_id: set(range(1, h.seq + 1)) for h in fleet}
    onlines = sum(1 for h in fleet for m in h.uplinks() if isinstance(m, Online))

    def every_uplink_applied_once_split_over_both() -> None:
        with two.db.transaction() as s:
            rows = s.execute(
                select(UplinkReceipt.kiosk_id, UplinkReceipt.seq).where(
                    UplinkReceipt.kiosk_id.in_(list(emitted))
                )
            ).all()
            events = s.execute(
                select(SlotEventRecord.kiosk_id, SlotEventRecord.seq, func.count()).group_by(
                    SlotEventRecord.kiosk_id, SlotEventRecord.seq
                )
            ).all()
            statuses = dict(s.execute(select(CommandRecord.kiosk_id, CommandRecord.status)).all())
        received: dict[str, set[int]] = {k: set() for k in emitted}
        for kiosk_id, seq in rows:
            received[kiosk_id].add(seq)
        assert received == emitted, "every sequence number of every kiosk, no more"
        assert len(rows) == sum(len(v) for v in emitted.values())
        assert len(events) == len(unlocks), events
        assert all(n == 1 for *_, n in events), f"slot events recorded twice: {events}"
        # Only a bridge process writes a result into the record: this process has no
        # subscription, so the answers came through the bridges.
        assert statuses == {
            **{h.kiosk_id: "ok" for h in pings},
            **{h.kiosk_id: "taken" for h in unlocks},
        }

        after = two.counters()
        delta = {b: {k: v - before[b].get(k, 0) for k, v in after[b].items()} for b in after}
        for bridge_id, d in delta.items():
            assert d.get("applied", 0) > 0, f"bridge {bridge_id} applied nothing: {delta}"
            assert d.get("duplicates", 0) == 0, f"bridge {bridge_id} saw duplicates: {delta}"
        applied = sum(d.get("applied", 0) for d in delta.values())
        # Each sequenced uplink and each Online applied by exactly one of the two processes.
        assert applied == len(rows) + onlines, delta

    eventually(every_uplink_applied_once_split_over_both)

    fleet.stop()
    for b in two.bridges:
        assert b.stop() == 0, b.log.read_text()
        assert f"bridge {b.bridge_id} stopped" in b.log.read_text()


def test_kiosks_reconnecting_at_once_show_online_though_wills_and_onlines_split_over_bridges(
    two_bridges: TwoBridges,
) -> None:
    """The Will of connection c and the Online of connection c+1 may be decoded by different
    processes in either order (firmware_protocol SPEC §6): `conn` orders them, not arrival."""
    two = two_bridges
    _wait_until_both_bridges_subscribed(two)
    fleet = Fleet(two.credentials[:12], "127.0.0.1", two.settings.mqtt_port, heartbeat_s=60)
    two.fleets.append(fleet)
    fleet.start()
    fleet.wait_all_online()
    for _ in range(3):
        for h in fleet:
            h.drop(offline_s=0.05)
        fleet.wait_all_online()
    conns = {h.kiosk_id: h.conn for h in fleet}
    assert min(conns.values()) >= 4

    def latest_connection_online() -> None:
        for h in fleet:
            body = two.api.get(f"/api/v1/kiosks/{h.kiosk_id}").json()
            assert body["online"] is True, f"{h.kiosk_id} offline"
        with two.db.transaction() as s:
            stored = dict(
                s.execute(
                    select(KioskState.kiosk_id, KioskState.conn).where(
                        KioskState.kiosk_id.in_(list(conns))
                    )
                ).all()
            )
        assert stored == conns, "the newest connection of every kiosk is the one recorded"

    eventually(latest_connection_online)
    assert {h.kiosk_id: h.conn for h in fleet} == conns, "a kiosk reconnected meanwhile"
