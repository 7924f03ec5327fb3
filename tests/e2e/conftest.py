"""End-to-end stacks: simulated kiosks -> a real broker -> bridge -> database -> HTTP API.

Nothing here injects a decoded message: every uplink leaves a simulated kiosk's own MQTT
connection, passes the broker's password file and ACL, and is decoded by a bridge. Tests
assert through the HTTP API, i.e. what an operator or a rider would see.

Two stacks (SPEC §6):

- `production`: a private Mosquitto started from the project's generated conf, password
  file and ACL; PostgreSQL (one throw-away database per session, migrated with Alembic,
  truncated per test); Redis (its own database number, flushed per test); the bridge with
  a shared subscription.
- `embedded`: a migrated SQLite file, the in-process amqtt broker reading the same files,
  `MemorySharedState`, one in-process bridge subscribing plainly.

The production stack needs the services: it skips without them on a developer machine and
fails under CI=true (tests/services.py `require`).
"""

from __future__ import annotations

import os
import queue
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
import redis
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import text

from device_sim.credentials import KioskCredential
from device_sim.fleet import Fleet, KioskHandle
from server.app import create_app
from server.bridge.runner import Bridge
from server.broker.embedded import EmbeddedBroker
from server.config import Settings
from server.core.db import Database
from server.core.migrate import upgrade
from server.core.shared_state import MemorySharedState, RedisSharedState, SharedState
from server.kiosks import service as kiosks
from server.ledger import service as ledger
from server.models import Base
from server.partners import service as partners
from server.runtime import attach_bridge
from tests.brokers import PrivateMosquitto, private_mosquitto
from tests.services import free_port, require, throwaway_pg_database

T = TypeVar("T")

#: Redis database of the e2e tests: not the one tests/conftest.py flushes, so a concurrent
#: run of the other layers cannot wipe a result a command sender is waiting for.
E2E_REDIS_URL = os.environ.get("UMB_TEST_E2E_REDIS_URL", "redis://127.0.0.1:6379/14")
CLOUD_PASSWORD = "e2e-cloud-password"
CENTER = (30.2590, 120.1300)  # Hangzhou, West Lake
FLEET_SIZE = 30
#: How long a test waits for the API to show what the simulator did.
WAIT_S = 20.0
STACKS = ("production", "embedded")


# ------------------------------------------------------------------------- views


SlotRow = tuple[int, str, str | None, int | None]
"""(slot_no, status, tag as uppercase hex, fault_code): one slot as the API shows it."""


def sim_slots(handle: KioskHandle) -> list[SlotRow]:
    """What the simulated kiosk physically holds, in the API's vocabulary."""
    rows: list[SlotRow] = []
    for n, s in enumerate(handle.slots(), start=1):
        if s.fault is not None:
            status = "fault"
        elif s.tag is not None:
            status = "umbrella"
        else:
            status = "empty"
        rows.append((n, status, None if s.tag is None else s.tag.hex().upper(), s.fault))
    return rows


def api_slots(body: dict[str, Any]) -> list[SlotRow]:
    return [(s["slot_no"], s["status"], s["tag"], s["fault_code"]) for s in body["slots"]]


# ------------------------------------------------------------------------- clients


class KioskImpostor:
    """A plain paho client logged in with one kiosk's real credentials."""

    def __init__(self, port: int, cred: KioskCredential) -> None:
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=cred.kiosk_id, protocol=mqtt.MQTTv311
        )
        c.username_pw_set(cred.kiosk_id, cred.password)
        c.on_connect = lambda _c, _u, _f, rc, _p: self._connack.put(rc)
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        self.client = c

    def connack(self) -> ReasonCode:
        return self._connack.get(timeout=10)

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {topic}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------------- stack


@dataclass
class Stack:
    kind: str
    settings: Settings
    db: Database
    shared_state: SharedState
    port: int
    api: TestClient
    credentials: list[KioskCredential]
    bridge: Bridge | None = None
    _fleets: list[Fleet] = field(default_factory=list)

    def start_fleet(self, credentials: list[KioskCredential], **options: Any) -> Fleet:
        """A simulated fleet on this stack's broker; stopped by the fixture."""
        options.setdefault("seed", 7)
        fleet = Fleet(credentials, "127.0.0.1", self.port, **options)
        self._fleets.append(fleet)
        fleet.start()
        return fleet

    def kiosk(self, kiosk_id: str) -> dict[str, Any]:
        r = self.api.get(f"/api/v1/kiosks/{kiosk_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def stop_bridge(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None

    def restart_bridge(self, down: Callable[[], None] = lambda: None) -> None:
        """Stop the bridge (a clean DISCONNECT; its persistent session stays on the broker),
        run `down` meanwhile, and start a new bridge process' worth with the same client id.
        The API keeps reading the database, so it does not need the bridge object."""
        self.stop_bridge()
        down()
        self.bridge = new_bridge(self.settings, self.db, self.shared_state, self.kind)

    def stop_fleets(self) -> None:
        while self._fleets:
            self._fleets.pop().stop()


@dataclass
class Registry:
    settings: Settings
    db: Database
    credentials: list[KioskCredential]


@pytest.fixture(scope="session")
def e2e_pg_url() -> Iterator[str]:
    """One migrated PostgreSQL database for the e2e session (the bridge processes of
    test_two_bridge_processes.py connect to it by URL)."""
    with throwaway_pg_database(migrate=True, prefix="umb_e2e") as url:
        yield url


def _clean_redis() -> str:
    require("Redis", "127.0.0.1", 6379)
    client = redis.Redis.from_url(E2E_REDIS_URL)
    client.flushdb()
    client.close()
    return E2E_REDIS_URL


def start_mosquitto(settings: Settings, stack: ExitStack) -> PrivateMosquitto:
    """Mosquitto on a free port with the project's conf, password file and ACL (its conf and
    log beside the password file). Stopped when `stack` closes."""
    password_file = settings.broker_password_file
    return stack.enter_context(
        private_mosquitto(password_file, settings.broker_acl_file, password_file.parent)
    )


def build_registry(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    """Settings, a migrated empty database with FLEET_SIZE registered kiosks, and the broker
    password/ACL files exported from it (the cloud user's password from settings)."""
    u = uuid.uuid4().hex[:8]
    common: dict[str, Any] = {
        "data_dir": tmp_path,
        "mqtt_host": "127.0.0.1",
        "mqtt_username": "cloud",
        "mqtt_password": CLOUD_PASSWORD,
        "bridge_id": f"e2e-bridge-{u}",
        "bridge_group": f"e2e{u}",
    }
    if kind == "production":
        url = request.getfixturevalue("e2e_pg_url")
        settings = Settings(
            database_url=url, redis_url=_clean_redis(), embedded_broker=False, **common
        )
        db = Database(url, pool_size=5, max_overflow=10)
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with db.engine.begin() as c:
            c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    else:
        settings = Settings(database_url="", redis_url="", embedded_broker=True, **common)
        upgrade(settings.db_url)
        db = Database(settings.db_url)
    with db.transaction() as session:
        partner = partners.find_or_register(session, name="E2E City Partner", region="Hangzhou")
        creds = kiosks.seed_fleet(
            session, FLEET_SIZE, partner_id=partner.id, lat=CENTER[0], lon=CENTER[1]
        )
        kiosks.export_broker_files(session, settings)
    return Registry(settings, db, [KioskCredential(c.kiosk_id, c.password) for c in creds])


def start_broker(kind: str, settings: Settings, stack: ExitStack) -> int:
    if kind == "production":
        return start_mosquitto(settings, stack).port
    port = free_port()
    broker = EmbeddedBroker(
        "127.0.0.1", port, settings.broker_password_file, settings.broker_acl_file
    )
    broker.start()
    stack.callback(broker.stop)
    return port


def new_bridge(settings: Settings, db: Database, state: SharedState, kind: str) -> Bridge:
    """A started in-process bridge that has subscribed (production: shared subscription)."""
    bridge = Bridge(
        settings,
        db=db,
        shared_state=state,
        shared=kind == "production",
        client_id=settings.bridge_id,
    )
    bridge.start()
    if not bridge.connection.wait_ready(10):
        bridge.stop()
        pytest.fail("the bridge did not subscribe within 10 s")
    return bridge


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A whole system on one of the two stacks, with FLEET_SIZE kiosks registered and no
    simulated kiosk running yet (tests start the fleets they need)."""
    kind: str = request.param
    with ExitStack() as es:
        reg = build_registry(kind, request, tmp_path)
        es.callback(reg.db.dispose)
        port = start_broker(kind, reg.settings, es)
        settings = reg.settings.model_copy(update={"mqtt_port": port})
        state: SharedState = (
            RedisSharedState(settings.redis_url) if kind == "production" else MemorySharedState()
        )
        es.callback(state.close)
        bridge = new_bridge(settings, reg.db, state, kind)
        made: list[Stack] = []
        # Whichever bridge is current at the end (restart_bridge replaces it).
        es.callback(lambda: made[0].stop_bridge() if made else bridge.stop())
        api = es.enter_context(
            TestClient(create_app(settings, db=reg.db, hooks=[attach_bridge(bridge)]))
        )
        s = Stack(kind, settings, reg.db, state, port, api, reg.credentials, bridge)
        made.append(s)
        es.callback(s.stop_fleets)  # first out: kiosks go before the bridge and the broker
        yield s
        with reg.db.transaction() as session:
            problems = ledger.check_invariants(session)
        assert problems == [], f"ledger invariants broken after the scenario: {problems}"
