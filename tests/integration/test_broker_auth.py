"""Broker authentication and ACL (SPEC §1: a kiosk may publish and subscribe only on its own
topics), against a real Mosquitto and against the embedded amqtt broker, from the same files."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from server.broker.embedded import EmbeddedBroker
from server.broker.mosquitto import reload_mosquitto, write_mosquitto_files
from server.core.db import Database
from server.kiosks import repository as kiosk_repo
from server.kiosks import service as kiosks
from server.models import Base
from server.partners import service as partners
from tests.brokers import private_mosquitto
from tests.services import free_port

CLOUD_USER = "cloud"
CLOUD_PASSWORD = "cloud-test-password"
TIMEOUT = 5.0


@dataclass
class Fleet:
    db: Database
    password_file: Path
    acl_file: Path
    passwords: dict[str, str]

    @property
    def a(self) -> str:
        return sorted(self.passwords)[0]

    @property
    def b(self) -> str:
        return sorted(self.passwords)[1]

    def rewrite(self) -> None:
        with self.db.transaction() as session:
            write_mosquitto_files(
                self.password_file,
                self.acl_file,
                kiosks=kiosk_repo.credentials(session),
                cloud_users={CLOUD_USER: CLOUD_PASSWORD},
            )


@dataclass
class RunningBroker:
    kind: str
    port: int
    fleet: Fleet
    pid_file: Path | None = None

    def reload(self) -> None:
        self.fleet.rewrite()
        if self.pid_file is not None:
            assert reload_mosquitto(self.pid_file)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    db = Database(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
    Base.metadata.create_all(db.engine)
    with db.transaction() as session:
        partner = partners.register_partner(session, name="Hangzhou Ops", region="Hangzhou")
        creds = [
            kiosks.register_kiosk(
                session,
                partner_id=partner.id,
                name=f"Kiosk {i}",
                lat=30.27 + i / 1000,
                lon=120.15,
                address="West Lake",
                venue_type="metro_exit",
            )
            for i in range(2)
        ]
    f = Fleet(
        db=db,
        password_file=tmp_path / "broker" / "passwd",
        acl_file=tmp_path / "broker" / "acl",
        passwords={c.kiosk_id: c.password for c in creds},
    )
    f.rewrite()
    yield f
    db.dispose()


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request: pytest.FixtureRequest, fleet: Fleet, tmp_path: Path) -> Iterator[RunningBroker]:
    if request.param == "mosquitto":
        with private_mosquitto(fleet.password_file, fleet.acl_file, tmp_path) as mosquitto:
            yield RunningBroker("mosquitto", mosquitto.port, fleet, mosquitto.pid_file)
        return
    port = free_port()
    embedded = EmbeddedBroker("127.0.0.1", port, fleet.password_file, fleet.acl_file)
    embedded.start()
    try:
        yield RunningBroker("embedded", port, fleet)
    finally:
        embedded.stop()


class Client:
    """A paho 2.x MQTT 3.1.1 client that records its CONNACK and the messages it receives."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        client_id: str,
        clean_session: bool = True,
    ):
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self._published = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=clean_session,
        )
        if username is not None:
            c.username_pw_set(username, password)
        c.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc)
        c.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, bytes(msg.payload)))
        c.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subacks.put(list(rcs))
        c.reconnect_delay_set(60, 60)  # a refused client must not retry during the test
        self.client = c
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()

    def wait_connack(self) -> ReasonCode:
        return self.connack.get(timeout=TIMEOUT)

    def subscribe(self, filter_: str) -> list[ReasonCode]:
        self.client.subscribe(filter_, qos=1)
        return self.subacks.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(broker: RunningBroker) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def _connect(
    broker: RunningBroker,
    clients: list[Client],
    username: str | None,
    password: str | None,
    client_id: str | None = None,
) -> tuple[Client, ReasonCode]:
    c = Client(broker.port, username, password, client_id or username or "anonymous-probe")
    clients.append(c)
    return c, c.wait_connack()


def _refused(rc: ReasonCode) -> bool:
    # MQTT 3.1.1 CONNACK 4 (bad user name or password) or 5 (not authorized).
    return rc.is_failure and rc.getName() in {"Not authorized", "Bad user name or password"}


def test_kiosk_with_wrong_password_is_refused(broker: RunningBroker, clients: list[Client]) -> None:
    _, rc = _connect(broker, clients, broker.fleet.a, "not-the-password")
    assert _refused(rc), rc


def test_client_without_credentials_is_refused(
    broker: RunningBroker, clients: list[Client]
) -> None:
    _, rc = _connect(broker, clients, None, None)
    assert _refused(rc), rc


def test_kiosk_publishes_reach_the_cloud_user(broker: RunningBroker, clients: list[Client]) -> None:
    fleet = broker.fleet
    cloud, rc = _connect(broker, clients, CLOUD_USER, CLOUD_PASSWORD, "bridge-test")
    assert not rc.is_failure
    assert not cloud.subscribe("umb/1/+/up/#")[0].is_failure
    kiosk, rc = _connect(broker, clients, fleet.a, fleet.passwords[fleet.a])
    assert not rc.is_failure

    kiosk.publish(f"umb/1/{fleet.a}/up/hb", b"hello")

    assert cloud.next_message() == (f"umb/1/{fleet.a}/up/hb", b"hello")


def test_kiosk_cannot_publish_on_another_kiosks_uplink(
    broker: RunningBroker, clients: list[Client]
) -> None:
    fleet = broker.fleet
    cloud, _ = _connect(broker, clients, CLOUD_USER, CLOUD_PASSWORD, "bridge-test")
    cloud.subscribe("umb/1/+/up/#")
    kiosk_a, rc = _connect(broker, clients, fleet.a, fleet.passwords[fleet.a])
    assert not rc.is_failure

    kiosk_a.publish(f"umb/1/{fleet.b}/up/slot", b"forged")
    kiosk_a.publish(f"umb/1/{fleet.a}/up/hb", b"marker")

    # Same client, same QoS: had the forged message been accepted it would arrive first.
    assert cloud.next_message() == (f"umb/1/{fleet.a}/up/hb", b"marker")
    assert cloud.messages.empty()


def test_kiosk_cannot_receive_another_kiosks_downlink(
    broker: RunningBroker, clients: list[Client]
) -> None:
    fleet = broker.fleet
    kiosk_a, _ = _connect(broker, clients, fleet.a, fleet.passwords[fleet.a])
    kiosk_a.subscribe(f"umb/1/{fleet.b}/down/#")  # Mosquitto grants it, amqtt refuses: both
    assert not kiosk_a.subscribe(f"umb/1/{fleet.a}/down/#")[0].is_failure  # deliver nothing
    cloud, _ = _connect(broker, clients, CLOUD_USER, CLOUD_PASSWORD, "bridge-test")

    cloud.publish(f"umb/1/{fleet.b}/down/cmd", b"unlock-b")
    cloud.publish(f"umb/1/{fleet.a}/down/cmd", b"marker")

    assert kiosk_a.next_message() == (f"umb/1/{fleet.a}/down/cmd", b"marker")
    assert kiosk_a.messages.empty()


def test_kiosk_cannot_publish_downlinks_to_itself(
    broker: RunningBroker, clients: list[Client]
) -> None:
    fleet = broker.fleet
    kiosk_b, _ = _connect(broker, clients, fleet.b, fleet.passwords[fleet.b])
    kiosk_b.subscribe(f"umb/1/{fleet.b}/down/#")
    kiosk_a, _ = _connect(broker, clients, fleet.a, fleet.passwords[fleet.a])
    cloud, _ = _connect(broker, clients, CLOUD_USER, CLOUD_PASSWORD, "bridge-test")

    kiosk_a.publish(f"umb/1/{fleet.b}/down/cmd", b"forged-unlock")
    cloud.publish(f"umb/1/{fleet.b}/down/cmd", b"marker")

    assert kiosk_b.next_message() == (f"umb/1/{fleet.b}/down/cmd", b"marker")
    assert kiosk_b.messages.empty()


def test_rotated_password_takes_effect_after_the_files_are_rewritten(
    broker: RunningBroker, clients: list[Client]
) -> None:
    fleet = broker.fleet
    old = fleet.passwords[fleet.a]
    with fleet.db.transaction() as session:
        new = kiosks.rotate_password(session, fleet.a).password
    broker.reload()

    deadline = time.monotonic() + TIMEOUT
    while True:  # Mosquitto applies SIGHUP asynchronously
        _, rc = _connect(broker, clients, fleet.a, new)
        if not rc.is_failure or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not rc.is_failure
    _, rc = _connect(broker, clients, fleet.a, old, client_id=f"{fleet.a}-old")
    assert _refused(rc)


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
def test_cloud_shared_subscription_receives_kiosk_uplinks_on_mosquitto(
    broker: RunningBroker, clients: list[Client]
) -> None:
    fleet = broker.fleet
    cloud, _ = _connect(broker, clients, CLOUD_USER, CLOUD_PASSWORD, "bridge-test")
    assert not cloud.subscribe("$share/bridges/umb/1/+/up/+")[0].is_failure
    kiosk, _ = _connect(broker, clients, fleet.a, fleet.passwords[fleet.a])

    kiosk.publish(f"umb/1/{fleet.a}/up/hb", b"shared")

    assert cloud.next_message() == (f"umb/1/{fleet.a}/up/hb", b"shared")


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_embedded_broker_refuses_shared_subscriptions_loudly(
    broker: RunningBroker, clients: list[Client]
) -> None:
    cloud, _ = _connect(broker, clients, CLOUD_USER, CLOUD_PASSWORD, "bridge-test")
    assert cloud.subscribe("$share/bridges/umb/1/+/up/+")[0].is_failure


def test_connecting_kiosk_gets_only_its_own_retained_downlinks(
    broker: RunningBroker, clients: list[Client]
) -> None:
    """A kiosk connecting gets the retained messages of its own subscriptions, never those
    retained for another kiosk (amqtt 0.12 sends a connecting client the retained messages of
    every filter any client is subscribed to, unchecked against the ACL)."""
    fleet = broker.fleet
    kiosk_b, _ = _connect(broker, clients, fleet.b, fleet.passwords[fleet.b])
    assert not kiosk_b.subscribe(f"umb/1/{fleet.b}/down/#")[0].is_failure
    cloud, _ = _connect(broker, clients, CLOUD_USER, CLOUD_PASSWORD, "bridge-test")
    cloud.client.publish(f"umb/1/{fleet.b}/down/playlist", b"b-playlist", qos=1, retain=True)
    cloud.client.publish(f"umb/1/{fleet.a}/down/playlist", b"a-playlist", qos=1, retain=True)
    assert kiosk_b.next_message() == (f"umb/1/{fleet.b}/down/playlist", b"b-playlist")

    kiosk_a, rc = _connect(broker, clients, fleet.a, fleet.passwords[fleet.a])
    assert not rc.is_failure
    time.sleep(0.5)  # what the broker sends at CONNECT, before any SUBSCRIBE
    assert kiosk_a.messages.empty(), kiosk_a.messages.get_nowait()
    assert not kiosk_a.subscribe(f"umb/1/{fleet.a}/down/#")[0].is_failure

    assert kiosk_a.next_message() == (f"umb/1/{fleet.a}/down/playlist", b"a-playlist")
    time.sleep(0.3)
    assert kiosk_a.messages.empty(), kiosk_a.messages.get_nowait()


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_embedded_broker_survives_subscriptions_changing_while_kiosks_reconnect(
    broker: RunningBroker, clients: list[Client], caplog: pytest.LogCaptureFixture
) -> None:
    """Kiosks with persistent sessions reconnecting while the cloud subscribes and
    unsubscribes: amqtt 0.12.1 walked its subscription map across awaits at each CONNECT
    and failed it with "dictionary changed size during iteration" (seen in the demo, on a
    session take-over). Every reconnect must get its own retained downlinks, and nothing
    may raise in the broker."""
    fleet = broker.fleet
    cloud, _ = _connect(broker, clients, CLOUD_USER, CLOUD_PASSWORD, "bridge-test")
    retained = 10
    for kiosk_id in (fleet.a, fleet.b):
        for n in range(retained):
            info = cloud.client.publish(f"umb/1/{kiosk_id}/down/p{n}", b"r", qos=1, retain=True)
    info.wait_for_publish(TIMEOUT)
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            cloud.client.subscribe(f"umb/1/{fleet.b}/up/churn{n}", qos=1)
            cloud.client.unsubscribe(f"umb/1/{fleet.b}/up/churn{n - 1}")
            n += 1
            time.sleep(0.0005)

    churner = threading.Thread(target=churn, daemon=True)
    churner.start()
    try:
        for round_ in range(12):
            for kiosk_id in (fleet.a, fleet.b):
                kiosk = Client(
                    broker.port, kiosk_id, fleet.passwords[kiosk_id], kiosk_id, clean_session=False
                )
                clients.append(kiosk)
                assert not kiosk.wait_connack().is_failure
                kiosk.client.subscribe(f"umb/1/{kiosk_id}/down/#", qos=1)
                want = {f"umb/1/{kiosk_id}/down/p{n}" for n in range(retained)}
                got: set[str] = set()
                while got != want:  # a persistent session also gets them again at CONNECT
                    topic, _ = kiosk.next_message()
                    assert topic in want, (round_, topic)
                    got.add(topic)
                with contextlib.suppress(queue.Empty):
                    while True:  # the copies sent at CONNECT and at SUBSCRIBE, acknowledged
                        kiosk.messages.get(timeout=0.2)
                kiosk.close()
    finally:
        stop.set()
        churner.join(TIMEOUT)
    problems = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not problems, [r.getMessage() for r in problems]
