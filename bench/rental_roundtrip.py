"""bench/rental_roundtrip: riders renting and returning concurrently against simulated kiosks,
through Mosquitto, PostgreSQL and Redis (issue 3).

    .venv/bin/python -m bench.rental_roundtrip [--riders 100] [--rounds 5] [--kiosks 40]
    .venv/bin/python -m bench.rental_roundtrip --quick      # 20 riders x 3, 10 kiosks
    .venv/bin/python -m bench.rental_roundtrip --processes one --profile  # where time goes

The stack is the production one of tests/e2e: a throw-away PostgreSQL database migrated with
Alembic, kiosks seeded with `seed_fleet`, the broker files exported from the registry, a
private Mosquitto with the project's passwd/ACL, one `Bridge` on the shared subscription
with `RedisSharedState`, and the API served by uvicorn, each with the default pool
(10 + 20). By default (`--processes split`) the bridge and the API run in processes of their
own, as `umbrella bridge` and `umbrella api` do in production: the API publishes its
commands on a connection of its own and meets the bridge's answers in Redis, as
`server.runtime.api_hooks` wires it. `--processes one` runs both in one server process, the
API sharing the bridge's command channel (`attach_bridge`, as the embedded default does);
`--profile` needs it. The simulated kiosks (`device_sim.fleet.Fleet`, riders who take the
umbrella at once: `take_after(0)`), the riders (one httpx client per rider thread) and the
bare MQTT client run in this process. Nagle is off on the simulated kiosks' sockets
(see `simulated_kiosks_without_nagle`; `--sim-nagle` leaves it on).

Riders are rows made directly in the database: a rider, a held deposit with its
`deposit_received` ledger entry, and a `rider_sessions` row holding `hash_token(token)`.
WeChat login is not part of the measured path.

A rental: `POST /api/v1/rentals` at a kiosk (201 once the kiosk reported the umbrella out),
then the simulated kiosk next to it takes the umbrella back into an empty slot
(`KioskHandle.insert_umbrella`), and the rider polls `GET /api/v1/rentals/current` until it
is null before renting again. Rider r's n-th rental is at kiosk r + n, so stock stays
balanced. Phases:

  C  capacity: `--capacity-riders` riders in a closed loop (next rental as soon as the last
     one is returned): rentals per second. Not 100 riders: the rent endpoint holds its
     request-scoped session (one pooled connection, idle in transaction) while it waits for
     the kiosk, and takes a second connection for its own transactions, so more concurrent
     rents than the pool holds (30) wait on each other until the pool times out (30 s, then
     500s; seen with 100 riders in a closed loop).
  A  baseline: the bare MQTT command round trip. A plain paho client with the cloud
     credentials publishes a PING (QoS 1) to a simulated kiosk and waits for its CmdResult on
     `umb/1/+/up/result`: no bridge, database or HTTP on that path (the bridge still runs and
     records those results, as in production). `--riders` workers at the rate of B.
  B  `--riders` riders, `--rounds` rentals each, started evenly at `--rate` rentals per
     second (default: half of C's, as bench/bridge_ingest measures latency at half load):
     p50/p99 of POST rent until active, errors (must be 0).
  A' the baseline again; the target compares B's p99 with the p99 of A and A' together.

Target (issue 3): rent p99 no more than 25 ms above the bare round trip's p99.

`--experiment NAME` changes the server process the way a fix outside this benchmark's
reach would (see EXPERIMENTS), to measure what it is worth; the default measures the code
as it is.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import resource
import secrets
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import redis
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from bench._infra import (
    REDIS_URL,
    bench_database,
    cpu_seconds,
    percentile,
    private_mosquitto,
    provision,
)
from device_sim.credentials import KioskCredential
from device_sim.fleet import Fleet, KioskHandle
from device_sim.kiosk import take_after
from firmware_protocol import decode_uplink, encode, topics
from firmware_protocol.messages import CmdOp, CmdResult, Command, MsgType
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.money import DEPOSIT
from server.ledger import service as ledger
from server.models import (
    DepositPayment,
    DepositStatus,
    EntryKind,
    KioskState,
    Rider,
    RiderSession,
    Slot,
    SlotStatus,
    Umbrella,
    UmbrellaState,
)
from server.riders.service import hash_token

TARGET_MS = 25.0
#: --experiment NAME: server changes outside the code this benchmark may touch, measured.
EXPERIMENTS = {
    "bridge-nodelay": "TCP_NODELAY on the bridge's MQTT socket (server/bridge/connection.py)",
    "pre-ping": "pool_pre_ping=True (a ping per checkout; server/core/db.py no longer pings)",
    "h11-asyncio": "uvicorn on h11 and asyncio's loop (without httptools and uvloop)",
}
#: The rider's app asks whether the return was seen: first after RETURN_FIRST_POLL_S, then
#: every RETURN_POLL_S (a tighter loop would load the API more than the rents do).
RETURN_FIRST_POLL_S = 0.05
RETURN_POLL_S = 0.05
RETURN_TIMEOUT_S = 30.0


# ------------------------------------------------------------------ riders


@dataclass(frozen=True)
class BenchRider:
    rider_id: int
    token: str


def seed_riders(db_url: str, count: int) -> list[BenchRider]:
    """Riders with a held deposit (as `deposits.service.settle_paid_order` leaves it: payment
    `held`, ledger `deposit_received`) and a live session token (only its hash stored)."""
    db = Database(db_url)
    now = clock.now()
    riders: list[BenchRider] = []
    try:
        with db.transaction() as s:
            for i in range(count):
                rider = Rider(openid=f"bench-openid-{i:06d}", created_at=now)
                s.add(rider)
                s.flush()
                payment = DepositPayment(
                    rider_id=rider.id,
                    out_trade_no=f"BENCH{rider.id:012d}",
                    idempotency_key=f"bench-deposit-{i}",
                    prepay_id=f"wxbench{rider.id}",
                    amount_fen=DEPOSIT,
                    status=DepositStatus.HELD,
                    transaction_id=f"4200{rider.id:016d}",
                    paid_at=now,
                    created_at=now,
                )
                s.add(payment)
                s.flush()
                ledger.post(
                    s,
                    EntryKind.DEPOSIT_RECEIVED,
                    rider_id=str(rider.id),
                    amount=DEPOSIT,
                    idempotency_key=payment.transaction_id or "",
                    reference=f"payment:{payment.out_trade_no}",
                )
                token = secrets.token_urlsafe(32)
                s.add(
                    RiderSession(
                        token_hash=hash_token(token),
                        rider_id=rider.id,
                        session_key="bench-not-a-wechat-session-key",
                        created_at=now,
                        expires_at=now + timedelta(days=1),
                    )
                )
                riders.append(BenchRider(rider.id, token))
    finally:
        db.dispose()
    return riders


# ------------------------------------------------------------------ server process


@dataclass
class Profile:
    """What --profile collects in the server process: timings (wall time s, value) per step,
    stage times per command id, and the statements of the longest rent and batches."""

    timings: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    trace: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    statements: dict[str, list[str]] = field(default_factory=dict)


def _instrument(profile: Profile, bridge: Any) -> None:
    """Wrap the steps of a rent (and the bridge's batches) with timers. Each rent runs in one
    worker thread, so a thread-local clock splits it into consecutive steps."""
    from sqlalchemy import event

    from server.bridge.dispatch import Dispatcher
    from server.rentals import service as rentals_service
    from server.riders import service as riders_service

    local = threading.local()
    lock = threading.Lock()
    trace = profile.trace

    def stamp(cmd_id: str | None, stage: str, at_ms: float | None = None) -> None:
        if cmd_id:
            trace[cmd_id][stage] = time.time() * 1000 if at_ms is None else at_ms

    def add(name: str, value: float) -> None:
        with lock:
            profile.timings[name].append((time.time(), value))

    def mark(name: str) -> None:
        now = time.perf_counter()
        last = getattr(local, "last", None)
        if last is not None:
            add(name, (now - last) * 1000)
        local.last = now

    @event.listens_for(bridge.db.engine, "before_cursor_execute")
    def statement(conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        log = getattr(local, "statements", None)
        if log is not None:
            log.append(" ".join(text.split())[:110])
            conn.info["bench_t"] = time.perf_counter()

    @event.listens_for(bridge.db.engine, "after_cursor_execute")
    def statement_done(conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        started = conn.info.pop("bench_t", None)
        if started is not None and getattr(local, "statements", None) is not None:
            where = "rent" if getattr(local, "in_rent", False) else "bridge"
            words = " ".join(text.split()).split(" ")
            table = next(
                (w for prev, w in itertools.pairwise(words) if prev in ("FROM", "INTO", "UPDATE")),
                "?",
            )
            add(f"sql {where}: {words[0]} {table}", (time.perf_counter() - started) * 1000)

    @event.listens_for(bridge.db.engine, "checkout")
    def checkout(*_args: Any) -> None:
        log = getattr(local, "statements", None)
        if log is not None:
            log.append("(pool checkout)")

    def begin_log() -> None:
        local.statements = []

    def end_log(name: str) -> None:
        log = local.statements
        local.statements = None
        add(f"# statements: {name}", float(len(log)))
        with lock:
            if len(log) > len(profile.statements.get(name, ())):
                profile.statements[name] = log

    real_auth = riders_service.authenticate

    def authenticate(session: Any, token: str) -> Any:
        t = time.perf_counter()
        try:
            return real_auth(session, token)
        finally:
            add("0 auth query (request session)", (time.perf_counter() - t) * 1000)

    riders_service.authenticate = authenticate  # type: ignore[assignment]

    real_rent = rentals_service.rent

    def rent(*args: Any, **kwargs: Any) -> Any:
        start = local.last = time.perf_counter()
        begin_log()
        local.in_rent = True
        try:
            return real_rent(*args, **kwargs)
        finally:
            local.in_rent = False
            end_log("rent")
            mark("6 settle transaction + commit")
            add("= rentals.service.rent total", (time.perf_counter() - start) * 1000)
            local.last = None

    rentals_service.rent = rent  # type: ignore[assignment]  # the router calls service.rent

    channel = bridge.commands
    real_send = channel.send

    def send(*args: Any, **kwargs: Any) -> Any:
        mark("1 reserve transaction + commit")
        local.cmd_id = kwargs.get("cmd_id")
        stamp(local.cmd_id, "a api: send")
        try:
            return real_send(*args, **kwargs)
        finally:
            mark("5 decode result")

    channel.send = send

    publisher = channel.publisher
    real_publish = publisher.publish_and_wait

    def publish_and_wait(*args: Any, **kwargs: Any) -> Any:
        mark("2 command record transaction + commit")
        stamp(getattr(local, "cmd_id", None), "b api: publish")
        try:
            return real_publish(*args, **kwargs)
        finally:
            mark("3 publish + PUBACK wait")
            stamp(getattr(local, "cmd_id", None), "c api: PUBACK")

    publisher.publish_and_wait = publish_and_wait

    state = channel.shared_state
    real_wait = state.wait_result

    def wait_result(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_wait(*args, **kwargs)
        finally:
            mark("4 BLPOP: kiosk + bridge decode until the answer is pushed")
            stamp(getattr(local, "cmd_id", None), "h api: BLPOP returned")

    state.wait_result = wait_result

    dispatcher: Dispatcher = bridge.dispatcher
    real_batch = dispatcher.process_batch

    def process_batch(items: Sequence[Any]) -> Any:
        t = time.perf_counter()
        started = time.time() * 1000
        results = []
        for it in items:
            if it.topic.endswith("/up/result"):
                msg = decode_uplink(it.topic, it.payload)
                if isinstance(msg, CmdResult):
                    results.append(msg.cmd_id)
                    stamp(msg.cmd_id, "e bridge: received", it.received_ms)
                    stamp(msg.cmd_id, "f bridge: batch starts", started)
        begin_log()
        try:
            return real_batch(items)
        finally:
            kinds = "+".join(sorted(it.topic.rsplit("/", 1)[-1] for it in items))
            end_log(f"bridge batch {kinds if len(items) <= 3 else len(items)}")
            add("bridge batch (decode, apply, commit, push, ack)", (time.perf_counter() - t) * 1000)
            add("bridge batch size", float(len(items)))
            for cmd_id in results:
                stamp(cmd_id, "g bridge: committed, result pushed")

    dispatcher.process_batch = process_batch  # type: ignore[method-assign]

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                add(name, (time.perf_counter() - t) * 1000)

        return wrapper

    service = dispatcher.service
    if service.on_slots is not None:
        service.on_slots = timed("bridge: rentals.apply_slot_activity", service.on_slots)
    dispatcher._apply = timed(  # type: ignore[method-assign]
        "bridge: batch transaction incl. commit", dispatcher._apply
    )
    dispatcher._after_commit = timed(  # type: ignore[method-assign]
        "bridge: after commit (Redis: seen, counters, results)", dispatcher._after_commit
    )


def _bridge_main(
    settings_data: dict[str, Any],
    namespace: str,
    pool: tuple[int, int],
    experiments: frozenset[str],
    out: Any,
    stop: Any,
) -> None:
    """--processes split: the bridge process (`umbrella bridge`)."""
    from server.bridge.runner import Bridge
    from server.core.shared_state import RedisSharedState

    settings = Settings(**settings_data)
    db = Database(settings.db_url, pool_size=pool[0], max_overflow=pool[1])
    state = RedisSharedState(settings.redis_url, namespace=namespace)
    bridge = Bridge(settings, db=db, shared_state=state, shared=True, client_id=settings.bridge_id)
    _apply_bridge_experiments(bridge, experiments)
    bridge.start()
    try:
        if not bridge.connection.wait_ready(15):
            out.put(("error", "the bridge did not subscribe within 15 s"))
            return
        out.put(("ready", 0))
        stop.wait()
    finally:
        bridge.stop()
        state.close()
        db.dispose()
        out.put(("samples", Profile()))


def _apply_bridge_experiments(bridge: Any, experiments: frozenset[str]) -> None:
    if "bridge-nodelay" in experiments:  # what server/bridge/connection.py could do
        real_on_connect = bridge.connection._on_connect

        def on_connect(client: mqtt.Client, *args: Any) -> None:
            nodelay(client.socket())
            real_on_connect(client, *args)

        bridge.connection.client.on_connect = on_connect


@asynccontextmanager
async def _standalone_api_services(
    svc: Any, settings: Settings, state: Any, db: Database
) -> AsyncIterator[None]:
    """--processes split: what `server.runtime.api_hooks` gives the `umbrella api` process (a
    publish-only MQTT connection and a command channel over the shared Redis state), with the
    benchmark's Redis namespace."""
    from server.bridge.commands import CommandChannel
    from server.bridge.connection import BridgeConnection

    publisher = BridgeConnection(settings, subscribe=False, client_id=f"{settings.bridge_id}-api")
    publisher.start()
    svc.shared_state = state
    svc.publisher = publisher
    svc.commands = CommandChannel(publisher, state, db)
    try:
        yield
    finally:
        publisher.stop()


def _server_main(
    settings_data: dict[str, Any],
    namespace: str,
    pool: tuple[int, int],
    profile: bool,
    experiments: frozenset[str],
    split: bool,
    out: Any,
    stop: Any,
) -> None:
    """The API process, on uvicorn. With one process (the default), it also runs one Bridge
    (shared subscription) and the API shares its command channel (`attach_bridge`); with
    `--processes split`, the bridge runs in `_bridge_main` and the API talks to it through
    the broker and Redis, as `umbrella api` and `umbrella bridge` do."""
    from server.app import create_app
    from server.bridge.runner import Bridge
    from server.core.shared_state import RedisSharedState
    from server.runtime import attach_bridge

    settings = Settings(**settings_data)
    db = Database(
        settings.db_url,
        pool_size=pool[0],
        max_overflow=pool[1],
        pool_pre_ping="pre-ping" in experiments,
    )
    state = RedisSharedState(settings.redis_url, namespace=namespace)
    collected = Profile()
    if split:
        app = create_app(
            settings,
            db=db,
            hooks=[lambda svc: _standalone_api_services(svc, settings, state, db)],
        )
        try:
            _serve(app, out, stop, experiments, collected)
        finally:
            state.close()
            db.dispose()
        return
    bridge = Bridge(settings, db=db, shared_state=state, shared=True, client_id=settings.bridge_id)
    if profile:
        _instrument(collected, bridge)
    _apply_bridge_experiments(bridge, experiments)
    bridge.start()
    if not bridge.connection.wait_ready(15):
        out.put(("error", "the bridge did not subscribe within 15 s"))
        return
    app = create_app(settings, db=db, hooks=[attach_bridge(bridge)])
    try:
        _serve(app, out, stop, experiments, collected)
    finally:
        bridge.stop()
        state.close()
        db.dispose()


def _serve(app: Any, out: Any, stop: Any, experiments: frozenset[str], collected: Profile) -> None:
    """Serve `app` on a free loopback port until `stop` is set; report the port, then the
    profile."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # uvicorn picks httptools and uvloop (project dependencies) unless told otherwise.
    pure = {"loop": "asyncio", "http": "h11"} if "h11-asyncio" in experiments else {}
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", ws="none", access_log=False, **pure)
    )

    def watch() -> None:
        for _ in range(3000):
            if server.started:
                out.put(("ready", port))
                break
            time.sleep(0.01)
        else:
            out.put(("error", "the API did not start"))
        stop.wait()
        server.should_exit = True

    threading.Thread(target=watch, daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        out.put(("samples", collected))


@dataclass
class ServerProcess:
    port: int
    #: The API process, and the bridge process with `--processes split`.
    pids: tuple[int, ...]
    #: Stops the processes; returns the profile (empty without --profile).
    stop: Callable[[], Profile]


class _Child:
    """A spawned server-side process that reports ("ready", value) and, once `stop` is set,
    ("samples", Profile) on its own queue."""

    def __init__(self, ctx: Any, target: Callable[..., None], args: tuple[Any, ...], name: str):
        self.out = ctx.Queue()
        self.stop = ctx.Event()
        self.proc = ctx.Process(target=target, args=(*args, self.out, self.stop), name=name)
        self.proc.start()
        self.profile: Profile | None = None

    def ready(self) -> Any:
        kind, value = self.out.get(timeout=60)
        if kind != "ready":
            raise RuntimeError(f"{self.proc.name}: {value}")
        return value

    def finish(self) -> Profile:
        if self.profile is None and self.proc.is_alive():
            self.stop.set()
            while True:
                kind, value = self.out.get(timeout=60)
                if kind == "samples":
                    self.profile = value
                    break
            self.proc.join(30)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)
        return self.profile or Profile()


@contextmanager
def server_process(
    settings: Settings,
    namespace: str,
    pool: tuple[int, int],
    profile: bool,
    experiments: frozenset[str] = frozenset(),
    split: bool = False,
) -> Iterator[ServerProcess]:
    ctx = mp.get_context("spawn")
    data = settings.model_dump()
    children: list[_Child] = []
    try:
        if split:
            bridge = _Child(ctx, _bridge_main, (data, namespace, pool, experiments), "bench-bridge")
            children.append(bridge)
            bridge.ready()
        api = _Child(
            ctx,
            _server_main,
            (data, namespace, pool, profile, experiments, split),
            "bench-api" if split else "bench-server",
        )
        children.insert(0, api)
        port = int(api.ready())

        def finish() -> Profile:
            profiles = [child.finish() for child in children]  # stop them all
            return profiles[0]

        yield ServerProcess(port, tuple(c.proc.pid for c in children), finish)
    finally:
        for child in children:
            child.finish()


# ------------------------------------------------------------------ TCP_NODELAY


def nodelay(sock: object) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def simulated_kiosks_without_nagle() -> None:
    """paho leaves Nagle's algorithm on. A simulated kiosk PUBACKs an unlock at once and
    answers it on a later turn of its loop (after the rider took the umbrella), so the
    answer waits behind the unacknowledged PUBACK for the broker's delayed ACK: about 44 ms
    per unlock, while a PING (answered in the same turn) takes 0.5 ms. Both the rent and the
    baseline should see the same kiosk, so switch Nagle off on the simulated kiosks' sockets."""
    from device_sim import transport

    real = transport.KioskLink._socket_ready
    if getattr(real, "bench_nodelay", False):
        return

    def socket_ready(link: transport.KioskLink, client: mqtt.Client) -> None:
        nodelay(client.socket())
        real(link, client)

    socket_ready.bench_nodelay = True  # type: ignore[attr-defined]
    transport.KioskLink._socket_ready = socket_ready  # type: ignore[method-assign]


def trace_kiosks(trace: dict[str, dict[str, float]]) -> None:
    """--profile: when each simulated kiosk got an unlock and answered it (wall clock ms)."""
    from device_sim.kiosk import Kiosk

    real_handle = Kiosk.handle_downlink
    real_answer = Kiosk._answer

    def handle_downlink(kiosk: Kiosk, msg: Any) -> None:
        trace[msg.cmd_id]["d1 kiosk: got command"] = time.time() * 1000
        real_handle(kiosk, msg)

    def answer(kiosk: Kiosk, cmd_id: str, *args: Any, **kwargs: Any) -> None:
        trace[cmd_id]["d2 kiosk: answers"] = time.time() * 1000
        real_answer(kiosk, cmd_id, *args, **kwargs)

    Kiosk.handle_downlink = handle_downlink  # type: ignore[method-assign]
    Kiosk._answer = answer  # type: ignore[method-assign]


# ------------------------------------------------------------------ bare MQTT baseline


class BareCommander:
    """The cloud user's plain paho client: publish a command, wait for the kiosk's answer."""

    def __init__(self, settings: Settings, port: int) -> None:
        self._waiting: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        c.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        c.max_inflight_messages_set(1000)
        ready = threading.Event()
        c.on_message = self._on_message
        c.on_subscribe = lambda *_: ready.set()
        c.connect("127.0.0.1", port, keepalive=60)
        c.loop_start()
        c.subscribe(topics.uplink("+", MsgType.CMD_RESULT), qos=1)
        if not ready.wait(10):
            raise RuntimeError("bare client: no SUBACK")
        # Nagle off, as on the kiosks: a PUBLISH written right after the PUBACK of the
        # previous answer would wait for the broker's delayed ACK (40 ms on Linux).
        nodelay(c.socket())
        self.client = c

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        result = decode_uplink(msg.topic, bytes(msg.payload))
        if isinstance(result, CmdResult):
            with self._lock:
                event = self._waiting.pop(result.cmd_id, None)
            if event is not None:
                event.set()

    def ping(self, kiosk_id: str, timeout_s: float = 10.0) -> float | None:
        """Milliseconds from publish to the answer, None without an answer."""
        cmd_id = uuid.uuid4().hex
        now_ms = clock.now_ms()
        command = Command(kiosk_id, 0, now_ms, cmd_id, CmdOp.PING, now_ms + 30_000)
        event = threading.Event()
        with self._lock:
            self._waiting[cmd_id] = event
        started = time.perf_counter()
        self.client.publish(topics.downlink(kiosk_id, MsgType.COMMAND), encode(command), qos=1)
        if not event.wait(timeout_s):
            with self._lock:
                self._waiting.pop(cmd_id, None)
            return None
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, ms: float) -> None:
        with self.lock:
            self.latencies.append(ms)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


def run_workers(
    workers: int, rounds: int, rate: float | None, action: Callable[[int, int], None]
) -> float:
    """`action(i, r)` for `rounds` rounds in each of `workers` threads; wall seconds.

    `rate` None: a closed loop (each worker starts its next round as soon as the last one
    ended). Otherwise actions start evenly spaced, `rate` per second over all workers:
    worker i starts round r at i/rate + r*workers/rate (at once if it is late)."""
    gate = threading.Barrier(workers + 1)
    origin: list[float] = []

    def body(i: int) -> None:
        gate.wait()
        for r in range(rounds):
            if rate:
                ahead = origin[0] + (i + r * workers) / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            action(i, r)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    origin.append(time.perf_counter() + 0.05)
    gate.wait()
    for t in threads:
        t.join()
    return time.perf_counter() - origin[0]


def bare_phase(
    bare: BareCommander, kiosk_ids: list[str], workers: int, rounds: int, rate: float | None
) -> tuple[Tally, float]:
    tally = Tally()

    def ping(i: int, r: int) -> None:
        kiosk_id = kiosk_ids[(i + r) % len(kiosk_ids)]
        ms = bare.ping(kiosk_id)
        if ms is None:
            tally.error(f"no answer from {kiosk_id}")
        else:
            tally.ok(ms)

    for i in range(min(workers, 20)):  # warm-up: connections, first-message paths
        bare.ping(kiosk_ids[i % len(kiosk_ids)])
    return tally, run_workers(workers, rounds, rate, ping)


# ------------------------------------------------------------------ riders' loop


class Riders:
    """The riders' side: rent over HTTP, give the umbrella back at the next kiosk, wait
    until the API shows no open rental. One httpx client (keep-alive) per rider."""

    def __init__(
        self, api: str, riders: list[BenchRider], fleet: Fleet, kiosk_ids: list[str]
    ) -> None:
        self.riders = riders
        self.kiosk_ids = kiosk_ids
        self.handles = {k: fleet.kiosk(k) for k in kiosk_ids}
        self.locks = {k: threading.Lock() for k in kiosk_ids}
        self.clients = [
            httpx.Client(base_url=api, headers={"Authorization": f"Bearer {r.token}"}, timeout=90)
            for r in riders
        ]
        self.count = [0] * len(riders)

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def _kiosk(self, start: int, usable: Callable[[KioskHandle], bool]) -> KioskHandle:
        """The kiosk at `start`, or the next one that is usable (return anywhere)."""
        k = len(self.kiosk_ids)
        for step in range(k):
            handle = self.handles[self.kiosk_ids[(start + step) % k]]
            if usable(handle):
                return handle
        raise RuntimeError("no usable kiosk")

    def _give_back(self, start: int, tag: bytes) -> None:
        k = len(self.kiosk_ids)
        for step in range(k):
            handle = self.handles[self.kiosk_ids[(start + step) % k]]
            with self.locks[handle.kiosk_id]:  # one free slot, one umbrella
                empty = handle.empty_slots()
                if empty:
                    handle.insert_umbrella(empty[0], tag)
                    return
        raise RuntimeError("no empty slot in any kiosk")

    def cycle(self, i: int, tally: Tally | None) -> None:
        """One rental of rider i, returned; `tally` None = warm-up (not counted). Rider i's
        n-th rental is at kiosk i + n, the umbrella goes back at the next one."""
        client = self.clients[i]
        n = self.count[i] = self.count[i] + 1
        # A kiosk the drift of returns left with fewer than 3 umbrellas is skipped (before
        # the clock starts), so `no_umbrella_available` cannot happen.
        rent_at = self._kiosk(i + n, lambda h: len(h.umbrellas()) >= 3).kiosk_id
        t0 = time.perf_counter()
        try:
            resp = client.post(
                "/api/v1/rentals",
                json={"kiosk_id": rent_at},
                headers={"Idempotency-Key": f"bench-{i}-{uuid.uuid4().hex}"},
            )
        except httpx.HTTPError as e:
            if tally is not None:
                tally.error(f"rent: {type(e).__name__}: {e}")
            return
        ms = (time.perf_counter() - t0) * 1000
        body = resp.json() if resp.headers.get("content-type") == "application/json" else {}
        if resp.status_code != 201 or body.get("status") != "active":
            if tally is not None:
                tally.error(f"rent {resp.status_code}: {resp.text[:160]}")
            return
        if tally is not None:
            tally.ok(ms)
        t1 = time.perf_counter()
        self._give_back(self.kiosk_ids.index(rent_at) + 1, bytes.fromhex(body["umbrella_tag"]))
        time.sleep(RETURN_FIRST_POLL_S)
        while True:
            current = client.get("/api/v1/rentals/current")
            if current.status_code == 200 and current.json() is None:
                if tally is not None:
                    with tally.lock:
                        tally.returns.append((time.perf_counter() - t1) * 1000)
                return
            if time.perf_counter() - t1 > RETURN_TIMEOUT_S:
                if tally is not None:
                    tally.error(f"return of rental {body['id']} not seen in time")
                return
            time.sleep(RETURN_POLL_S)

    def phase(
        self, workers: int, rounds: int, rate: float | None, warmup: int = 0
    ) -> tuple[Tally, float]:
        """Riders 0..workers-1, `rounds` measured rentals each (after `warmup` uncounted)."""

        def safe(i: int, tally: Tally | None) -> None:
            try:
                self.cycle(i, tally)
            except Exception as e:  # counted, and the rider goes on
                if tally is not None:
                    tally.error(f"rider {i}: {type(e).__name__}: {e}")

        if warmup:
            run_workers(workers, warmup, None, lambda i, _r: safe(i, None))
        tally = Tally()
        elapsed = run_workers(workers, rounds, rate, lambda i, _r: safe(i, tally))
        return tally, elapsed


# ------------------------------------------------------------------ setup helpers


def wait_stack_sees_fleet(db_url: str, fleet: Fleet, timeout_s: float = 60.0) -> None:
    """Until the database shows every kiosk online and every simulated umbrella in its slot."""
    expected = sum(len(h.umbrellas()) for h in fleet)
    db = Database(db_url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with db.transaction() as s:
                online = s.scalar(select(func.count()).where(KioskState.online.is_(True)))
                slots = s.scalar(select(func.count()).where(Slot.status == SlotStatus.UMBRELLA))
                stocked = s.scalar(
                    select(func.count()).where(Umbrella.state == UmbrellaState.IN_SLOT)
                )
            if online == len(fleet) and slots == expected and stocked == expected:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"stack sees {online}/{len(fleet)} kiosks online, {slots}/{expected} "
                    f"slots with umbrellas, {stocked}/{expected} umbrellas in stock"
                )
            time.sleep(0.1)
    finally:
        db.dispose()


def clean_redis(url: str, namespace: str) -> None:
    r = redis.Redis.from_url(url)
    try:
        keys = list(r.scan_iter(f"{namespace}:*", count=1000))
        for start in range(0, len(keys), 1000):
            r.delete(*keys[start : start + 1000])
    finally:
        r.close()


def own_cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def fmt(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms, "
        f"mean {statistics.fmean(values):.1f} ms, max {max(values):.1f} ms (n={len(values)})"
    )


def print_errors(tally: Tally) -> None:
    counts: dict[str, int] = defaultdict(int)
    for e in tally.errors:
        counts[e[:160]] += 1
    for e, n in sorted(counts.items(), key=lambda x: -x[1])[:5]:
        print(f"   !! {n} x {e}")


def print_profile(
    profile: Profile, kiosk_trace: dict[str, dict[str, float]], window: tuple[float, float]
) -> None:
    """Phase B only (wall-clock `window`): where a rent's time went, in the server process."""
    start, end = window
    picked = {
        name: [v for t, v in values if start <= t <= end]
        for name, values in profile.timings.items()
    }
    if not any(picked.values()):
        return
    print("  profile of phase B (server process; --profile):")
    for name in sorted(picked):
        values = picked[name]
        if not values or name.startswith("sql "):
            continue
        if name.startswith("#") or name == "bridge batch size":
            print(
                f"    {name}: mean {statistics.fmean(values):.1f}, max {max(values):.0f} "
                f"(n={len(values)})"
            )
            continue
        print(
            f"    {name}: p50 {percentile(values, 50):.2f} ms, "
            f"p99 {percentile(values, 99):.2f} ms, mean {statistics.fmean(values):.2f} ms"
        )
    sql = sorted(
        ((sum(v), name, v) for name, v in picked.items() if name.startswith("sql ") and v),
        reverse=True,
    )
    if sql:
        print("  SQL statements by table, total over phase B (execute to result, incl. waits):")
        for total, name, v in sql[:16]:
            print(f"    {name[4:]}: {total:.0f} ms in {len(v)}, mean {statistics.fmean(v):.2f} ms")
    steps: dict[str, list[float]] = defaultdict(list)
    for cmd_id, stages in profile.trace.items():
        merged = {**stages, **kiosk_trace.get(cmd_id, {})}
        if not start * 1000 <= merged.get("a api: send", 0) <= end * 1000:
            continue
        if "h api: BLPOP returned" not in merged:
            continue
        ordered = sorted(merged.items())
        for (a, ta), (b, tb) in itertools.pairwise(ordered):
            steps[f"{a} -> {b}"].append(tb - ta)
    if steps:
        print("  one unlock, stage to stage (wall clock ms; kiosk stages from this process):")
        for name in sorted(steps):
            v = steps[name]
            print(
                f"    {name}: p50 {percentile(v, 50):.1f}, p99 {percentile(v, 99):.1f}, "
                f"mean {statistics.fmean(v):.1f} (n={len(v)})"
            )
    for name, log in sorted(profile.statements.items()):
        if name in ("rent", "bridge batch result+slot", "bridge batch slot"):
            print(f"  statements of the longest {name} (whole run):")
            for line in log:
                print(f"    {line}")


class CpuMeter:
    def __init__(self, pids: tuple[int, ...]) -> None:
        self.pids = pids
        self.start = (self._server_s(), own_cpu_s(), time.perf_counter())

    def _server_s(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def line(self, rentals: int) -> str:
        server = self._server_s() - self.start[0]
        own = own_cpu_s() - self.start[1]
        wall = time.perf_counter() - self.start[2]
        return (
            f"CPU: server {'processes' if len(self.pids) > 1 else 'process'} (API + bridge) "
            f"{server / wall:.0%} of a core, "
            f"{server / max(1, rentals) * 1000:.1f} ms per rental; this process (riders, "
            f"kiosks) {own / wall:.0%}"
        )


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--riders", type=int, default=100, help="concurrent riders (paced phase)")
    ap.add_argument("--rounds", type=int, default=5, help="rentals per rider (paced phase)")
    ap.add_argument("--kiosks", type=int, default=40)
    ap.add_argument(
        "--capacity-riders",
        type=int,
        default=20,
        help="riders in the closed loop that measures rentals/s (see the pool note)",
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="rentals/s of the paced phase (default: half the measured capacity)",
    )
    ap.add_argument(
        "--pool",
        default="10,20",
        help="pool_size,max_overflow of the server process (default: server.core.db's)",
    )
    ap.add_argument("--profile", action="store_true", help="time the rent path's steps")
    ap.add_argument(
        "--sim-nagle",
        action="store_true",
        help="leave Nagle on in the simulated kiosks (adds ~44 ms to every unlock answer)",
    )
    ap.add_argument(
        "--experiment",
        action="append",
        default=[],
        choices=sorted(EXPERIMENTS),
        help="change the server process the way the named experiment says (not production)",
    )
    ap.add_argument(
        "--processes",
        choices=("split", "one"),
        default="split",
        help="split (default): API and bridge each in a process of its own, as `umbrella api` "
        "and `umbrella bridge` run in production; one: both in one server process (as the "
        "embedded default runs them; what --profile needs)",
    )
    ap.add_argument("--quick", action="store_true", help="20 riders x 3, 10 kiosks")
    args = ap.parse_args(argv)
    split = args.processes == "split"
    if split and args.profile:
        ap.error("--profile times the bridge in the API's process: add --processes one")
    if args.quick:
        args.riders, args.rounds, args.kiosks, args.capacity_riders = 20, 3, 10, 10
    if not args.sim_nagle:
        simulated_kiosks_without_nagle()
    kiosk_trace: dict[str, dict[str, float]] = defaultdict(dict)
    if args.profile:
        trace_kiosks(kiosk_trace)
    pool_size, overflow = (int(x) for x in args.pool.split(","))
    cap_riders = min(args.capacity_riders, args.riders)
    cap_rounds = max(3, args.rounds * args.riders // cap_riders)
    namespace = f"umbbench{uuid.uuid4().hex[:8]}"
    verdict = "MISS"

    with tempfile.TemporaryDirectory() as tmp, bench_database() as db_url:
        work = Path(tmp)
        settings = Settings(
            data_dir=work,
            database_url=db_url,
            redis_url=REDIS_URL,
            embedded_broker=False,
            mqtt_password="bench-cloud-password",
            bridge_id=f"bench-bridge-{namespace}",
            bridge_group=namespace,
        )
        creds = [KioskCredential(c.kiosk_id, c.password) for c in provision(settings, args.kiosks)]
        riders = seed_riders(db_url, args.riders)
        profile = Profile()
        window = (0.0, 0.0)
        try:
            with (
                private_mosquitto(settings, work) as port,
                server_process(
                    settings.model_copy(update={"mqtt_port": port}),
                    namespace,
                    (pool_size, overflow),
                    args.profile,
                    frozenset(args.experiment),
                    split,
                ) as server,
            ):
                settings = settings.model_copy(update={"mqtt_port": port})
                fleet = Fleet(
                    creds, "127.0.0.1", port, heartbeat_s=60.0, unlock_window_s=10.0, seed=7
                )
                fleet.start()
                bare: BareCommander | None = None
                crowd: Riders | None = None
                try:
                    fleet.wait_all_online(timeout=60)
                    for handle in fleet:
                        handle.set_rider(take_after(0.0))  # the rider takes it at once
                    wait_stack_sees_fleet(db_url, fleet)
                    stock = sum(len(h.umbrellas()) for h in fleet)
                    print(
                        f"rental_roundtrip: {args.riders} riders, {args.kiosks} kiosks with "
                        f"{stock} umbrellas; "
                        + (
                            "API and bridge in processes of their own"
                            if split
                            else "API + bridge in one server process"
                        )
                        + f" (pool {pool_size}+{overflow}{' each' if split else ''}); "
                        "PostgreSQL, Redis, Mosquitto"
                    )
                    for name in args.experiment:
                        print(f"   EXPERIMENT {name}: {EXPERIMENTS[name]}")
                    crowd = Riders(
                        f"http://127.0.0.1:{server.port}", riders, fleet, fleet.kiosk_ids
                    )
                    bare = BareCommander(settings, port)

                    # C. capacity: a closed loop, no pause between rentals
                    cpu = CpuMeter(server.pids)
                    cap, cap_s = crowd.phase(cap_riders, cap_rounds, None, warmup=1)
                    capacity = len(cap.latencies) / cap_s
                    print(
                        f"C  capacity, {cap_riders} riders in a closed loop (rent, return, "
                        f"next): {capacity:,.1f} rentals/s; rent {fmt(cap.latencies)}; "
                        f"errors {len(cap.errors)}"
                    )
                    print(f"   {cpu.line(len(cap.latencies))}")
                    print_errors(cap)
                    rate = args.rate or max(1.0, capacity / 2)

                    # A. bare MQTT round trip at that rate
                    a, _ = bare_phase(bare, fleet.kiosk_ids, args.riders, args.rounds, rate)
                    print(
                        f"A  bare MQTT command round trip (PING -> CmdResult, no bridge/DB/HTTP "
                        f"on the path), {args.riders} workers at {rate:,.1f}/s: "
                        f"{fmt(a.latencies)}; errors {len(a.errors)}"
                    )

                    # B. the riders at that rate
                    cpu = CpuMeter(server.pids)
                    b_start = time.time()
                    b, b_s = crowd.phase(args.riders, args.rounds, rate)
                    window = (b_start, time.time())
                    print(
                        f"B  rent (POST /api/v1/rentals until active), {args.riders} riders "
                        f"at {rate:,.1f} rentals/s: {fmt(b.latencies)}; "
                        f"errors {len(b.errors)}"
                    )
                    print(
                        f"   achieved {len(b.latencies) / b_s:,.1f} rentals/s; return until "
                        f"GET current is null (first poll after "
                        f"{RETURN_FIRST_POLL_S * 1000:.0f} ms): {fmt(b.returns)}"
                    )
                    print(f"   {cpu.line(len(b.latencies))}")
                    print_errors(b)

                    # A'. bare again
                    a2, _ = bare_phase(bare, fleet.kiosk_ids, args.riders, args.rounds, rate)
                    print(f"A' bare again: {fmt(a2.latencies)}; errors {len(a2.errors)}")
                finally:
                    if bare is not None:
                        bare.close()
                    if crowd is not None:
                        crowd.close()
                    fleet.stop()
                    profile = server.stop()

            both = a.latencies + a2.latencies
            bare_p99, rent_p99 = percentile(both, 99), percentile(b.latencies, 99)
            errors = len(b.errors) + len(cap.errors) + len(a.errors) + len(a2.errors)
            verdict = "PASS" if rent_p99 - bare_p99 <= TARGET_MS and not errors else "MISS"
            print(
                f"rent p99 {rent_p99:.1f} ms - bare p99 {bare_p99:.1f} ms (A and A') = "
                f"{rent_p99 - bare_p99:+.1f} ms (target <= +{TARGET_MS:.0f} ms, 0 errors); "
                f"p50 {percentile(b.latencies, 50):.1f} vs {percentile(both, 50):.1f} ms "
                f"({percentile(b.latencies, 50) / percentile(both, 50):.1f} x): {verdict}"
            )
            print_profile(profile, kiosk_trace, window)
        finally:
            clean_redis(REDIS_URL, namespace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
