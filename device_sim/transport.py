"""Thousands of MQTT connections driven by one selector thread.

paho-mqtt's external-event-loop API (`socket()`, `loop_read()`, `loop_write()`,
`loop_misc()`, `want_write()` and the `on_socket_*` callbacks) lets one `EventLoop`
thread serve every kiosk's client: no thread per connection. The only other threads are
a few connector workers, because paho's TCP connect blocks (`socket.create_connection`);
they run `Client.reconnect()` on a client the loop does not touch yet and hand the
connected socket back to the loop.

Every kiosk call happens on the loop thread. Other threads use `EventLoop.call_soon`
(thread-safe, wakes the selector through a socketpair) or `EventLoop.run_sync`.

Each connection attempt gets a fresh paho `Client`: paho would otherwise re-send its own
in-flight QoS 1 messages on reconnect, before our Online; instead the kiosk replays its
buffer itself, in order, after Online (SPEC.md §5). The broker keeps the session
(clean_session=False), so downlinks queued while offline still arrive.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import random
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from device_sim.faults import UplinkMangler
from device_sim.kiosk import Kiosk
from firmware_protocol import DecodeError, decode_downlink, encode, topic_for, topics
from firmware_protocol.messages import SEQUENCED_UPLINKS, UplinkMessage

log = logging.getLogger(__name__)
T = TypeVar("T")

KEEPALIVE_S = 60
HANDSHAKE_TIMEOUT_S = 30.0
REORDER_FLUSH_S = 0.5
MISC_INTERVAL_S = 1.0


class TimerHandle:
    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    """A selector loop with timers and a thread-safe call queue; also a kiosk `Runtime`."""

    def __init__(self, name: str = "device-sim-loop") -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: deque[Callable[[], None]] = deque()
        self._calls_lock = threading.Lock()
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._counter = itertools.count()
        self._dirty: set[KioskLink] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = False
        self._woken = False
        self.errors = 0

    # ------------------------------------------------------------- runtime

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> TimerHandle:
        """Loop thread only (use `call_soon` from elsewhere)."""
        handle = TimerHandle(time.monotonic() + delay_s, fn)
        heapq.heappush(self._timers, (handle.when, next(self._counter), handle))
        return handle

    # -------------------------------------------------------- thread safety

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def call_soon(self, fn: Callable[[], None]) -> None:
        with self._calls_lock:
            self._calls.append(fn)
            wake = not self._woken
            self._woken = True
        if wake:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def run_sync(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn` on the loop thread and return its result (or raise its exception)."""
        if self.in_loop() or not self.running:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as e:
                future.set_exception(e)

        self.call_soon(call)
        return future.result(timeout)

    # ---------------------------------------------------------------- I/O

    def register(self, sock: Any, link: KioskLink) -> None:
        try:
            self._selector.register(sock, selectors.EVENT_READ, link)
        except (KeyError, ValueError):
            self._selector.modify(sock, selectors.EVENT_READ, link)

    def unregister(self, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def set_write(self, sock: Any, link: KioskLink, on: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        try:
            key = self._selector.get_key(sock)
        except (KeyError, ValueError):
            return
        if key.events != events:
            self._selector.modify(sock, events, link)

    def mark_dirty(self, link: KioskLink) -> None:
        """Write soon: batched at the end of the loop iteration (saves epoll_ctl calls)."""
        self._dirty.add(link)

    # ---------------------------------------------------------------- run

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if not self.running:
            return
        self.call_soon(self._request_stop)
        self._thread.join(timeout)
        if not self.running:
            self._run_calls()  # whatever was posted after the last iteration

    def _request_stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while not self._stopping:
            timeout = self._run_timers()
            if self._dirty:
                timeout = 0.0
            for key, events in self._selector.select(timeout):
                link = key.data
                if link is None:
                    self._drain_wakeup()
                    continue
                self._guard(
                    link.on_io,
                    bool(events & selectors.EVENT_READ),
                    bool(events & selectors.EVENT_WRITE),
                )
            self._run_calls()
            self._flush_dirty()

    def _drain_wakeup(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _run_calls(self) -> None:
        with self._calls_lock:
            calls, self._calls = self._calls, deque()
            self._woken = False
        for fn in calls:
            self._guard(fn)

    def _run_timers(self) -> float:
        now = time.monotonic()
        while self._timers:
            when, _, handle = self._timers[0]
            if when > now:
                return min(when - now, 1.0)
            heapq.heappop(self._timers)
            if not handle.cancelled:
                self._guard(handle.fn)
        return 1.0

    def _flush_dirty(self) -> None:
        while self._dirty:
            dirty, self._dirty = self._dirty, set()
            for link in dirty:
                self._guard(link.flush_writes)

    def _guard(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self.errors += 1
            log.exception("device_sim loop callback failed")


@dataclass
class TransportStats:
    """Counters written by the loop thread only; other threads read them."""

    connected: int = 0
    connect_attempts: int = 0
    connect_failures: int = 0
    auth_failures: int = 0
    reconnects: int = 0
    published: int = 0
    acked: int = 0
    downlinks: int = 0
    decode_errors: int = 0


class Connector:
    """Starts connection attempts at a bounded rate so a fleet does not stampede the broker.

    At most `rate` CONNECTs per second and `max_pending` handshakes at once; the TCP
    connect itself runs on `workers` threads.
    """

    def __init__(
        self, loop: EventLoop, rate: float = 250.0, max_pending: int = 200, workers: int = 8
    ) -> None:
        self.loop = loop
        self.rate = rate
        self.max_pending = max_pending
        self.pending = 0
        self.executor = concurrent.futures.ThreadPoolExecutor(workers, "device-sim-connect")
        self._queue: deque[KioskLink] = deque()
        self._tokens = 1.0
        self._last = time.monotonic()
        self._scheduled = False

    def request(self, link: KioskLink) -> None:
        """Loop thread: queue `link` for a connection attempt."""
        self._queue.append(link)
        self._pump()

    def release(self) -> None:
        self.pending = max(0, self.pending - 1)
        self._pump()

    def _pump(self) -> None:
        now = time.monotonic()
        self._tokens = min(max(1.0, self.rate / 20), self._tokens + (now - self._last) * self.rate)
        self._last = now
        while self._queue and self._tokens >= 1.0 and self.pending < self.max_pending:
            link = self._queue.popleft()
            if link.start_connect():
                self._tokens -= 1.0
                self.pending += 1
        if self._queue and not self._scheduled:
            self._scheduled = True
            self.loop.call_later(max(0.005, 1.0 / self.rate), self._tick)

    def _tick(self) -> None:
        self._scheduled = False
        self._pump()

    def shutdown(self) -> None:
        self._queue.clear()
        self.executor.shutdown(wait=True, cancel_futures=True)


class KioskLink:
    """One kiosk's MQTT connection: the `Outbox` of a `Kiosk`, and its reconnect policy."""

    def __init__(
        self,
        kiosk: Kiosk,
        password: str,
        host: str,
        port: int,
        loop: EventLoop,
        connector: Connector,
        stats: TransportStats,
        *,
        keepalive: int = KEEPALIVE_S,
        rng: random.Random | None = None,
    ) -> None:
        self.kiosk = kiosk
        self.password = password
        self.host, self.port = host, port
        self.loop = loop
        self.connector = connector
        self.stats = stats
        self.keepalive = keepalive
        self.rng = rng or random.Random(kiosk.kiosk_id)
        self.mangler: UplinkMangler[UplinkMessage] = UplinkMangler(kiosk.faults, self.rng)
        self.client: mqtt.Client | None = None
        self.state = "idle"  # idle queued connecting handshake online waiting stopped
        self.failures = 0
        self.ever_online = False
        self._inflight: dict[int, int] = {}
        self._retry: TimerHandle | None = None
        self._handshake_timer: TimerHandle | None = None
        self._flush_timer: TimerHandle | None = None
        self._pending_slot = False
        self.offline_until: float | None = None

    @property
    def online(self) -> bool:
        return self.state == "online"

    # --------------------------------------------------------- connecting

    def start(self) -> None:
        if self.state in ("idle", "waiting"):
            self.state = "queued"
            self.connector.request(self)

    def start_connect(self) -> bool:
        """Connector, loop thread: build a fresh client and connect it on a worker."""
        if self.state != "queued":
            return False
        kiosk = self.kiosk
        will = kiosk.prepare_connect()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=kiosk.kiosk_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.username_pw_set(kiosk.kiosk_id, self.password)
        client.will_set(topic_for(will), encode(will), qos=1, retain=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.connect_async(self.host, self.port, self.keepalive)
        self.client = client
        self.state = "connecting"
        self._pending_slot = True
        self.stats.connect_attempts += 1
        self.connector.executor.submit(self._connect_blocking, client)
        return True

    def _connect_blocking(self, client: mqtt.Client) -> None:
        """Worker thread: TCP connect + queue CONNECT. The loop does not touch `client` yet."""
        try:
            client.reconnect()
        except Exception as e:  # OSError mostly; anything else is just as fatal here
            err = e
            self.loop.call_soon(lambda: self._connect_failed(client, err))
        else:
            self.loop.call_soon(lambda: self._socket_ready(client))

    def _socket_ready(self, client: mqtt.Client) -> None:
        sock = client.socket()
        if client is not self.client or self.state != "connecting" or sock is None:
            _abandon(client)
            return
        self.state = "handshake"
        # A kiosk's answers are small writes right after reading a command: without
        # TCP_NODELAY, Nagle holds them until the broker's delayed ACK (up to ~40 ms).
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.loop.register(sock, self)
        self.loop.mark_dirty(self)
        self._handshake_timer = self.loop.call_later(HANDSHAKE_TIMEOUT_S, self._handshake_timeout)

    def _connect_failed(self, client: mqtt.Client, err: BaseException) -> None:
        if client is not self.client:
            return
        self.stats.connect_failures += 1
        log.debug("%s: connect failed: %s", self.kiosk.kiosk_id, err)
        self._lost(None)

    def _handshake_timeout(self) -> None:
        self._handshake_timer = None
        if self.state == "handshake":
            self.stats.connect_failures += 1
            log.debug("%s: no CONNACK within %g s", self.kiosk.kiosk_id, HANDSHAKE_TIMEOUT_S)
            self._lost(None)

    def _release_slot(self) -> None:
        if self._pending_slot:
            self._pending_slot = False
            self.connector.release()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    # ------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if client is not self.client:
            return
        self._release_slot()
        if reason_code.is_failure:
            self.stats.auth_failures += 1
            log.warning("%s: CONNACK refused: %s", self.kiosk.kiosk_id, reason_code)
            self.failures = max(self.failures, 4)  # refused: back off harder
            self._lost(None)
            return
        self.state = "online"
        self.failures = 0
        self.stats.connected += 1
        if self.ever_online:
            self.stats.reconnects += 1
        self.ever_online = True
        # SPEC.md §5: subscribe, then Online, Boot, replay, heartbeat (kiosk.on_connected)
        client.subscribe(topics.downlink_filter(self.kiosk.kiosk_id), qos=1)
        self.kiosk.on_connected(self)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if client is self.client:
            log.debug(
                "%s: connection lost in state %s: %s",
                self.kiosk.kiosk_id,
                self.state,
                reason_code.getName() if reason_code is not None else "?",
            )
            self._lost(None)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, props: Any
    ) -> None:
        if client is not self.client:
            return
        seq = self._inflight.pop(mid, None)
        if seq is not None:
            self.stats.acked += 1
            if seq:
                self.kiosk.on_acked(seq)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if client is not self.client:
            return
        self.stats.downlinks += 1
        try:
            msg = decode_downlink(message.topic, bytes(message.payload))
        except DecodeError as e:
            self.stats.decode_errors += 1
            log.warning("%s: undecodable downlink on %s: %s", self.kiosk.kiosk_id, message.topic, e)
            return
        if msg.kiosk_id == self.kiosk.kiosk_id:
            self.kiosk.handle_downlink(msg)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.loop.unregister(sock)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # From a connector worker (during reconnect) this is ignored: _socket_ready writes.
        if client is self.client and self.loop.in_loop():
            self.loop.mark_dirty(self)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if client is self.client and self.loop.in_loop():
            self.loop.set_write(sock, self, False)

    # ------------------------------------------------------------ I/O

    def on_io(self, readable: bool, writable: bool) -> None:
        client = self.client
        if client is None:
            return
        if readable:
            client.loop_read()
        if writable and client is self.client and client.socket() is not None:
            client.loop_write()

    def flush_writes(self) -> None:
        client = self.client
        if client is None or self.state not in ("handshake", "online"):
            return
        if client.want_write():
            client.loop_write()
        sock = client.socket()
        if client is self.client and sock is not None:
            self.loop.set_write(sock, self, client.want_write())

    def misc(self) -> None:
        client = self.client
        if client is not None and self.state in ("handshake", "online"):
            client.loop_misc()

    # ---------------------------------------------------------- Outbox

    def send(self, msg: UplinkMessage) -> None:
        """Kiosk -> broker. Sequenced uplinks pass the dup/reorder faults first."""
        if not isinstance(msg, SEQUENCED_UPLINKS):
            self._publish(msg)
            return
        for item in self.mangler.feed(msg):
            self._publish(item)
        if self.mangler.held is not None and self._flush_timer is None:
            self._flush_timer = self.loop.call_later(REORDER_FLUSH_S, self._flush_held)

    def _flush_held(self) -> None:
        self._flush_timer = None
        if self.state == "online":
            for item in self.mangler.flush():
                self._publish(item)

    def _publish(self, msg: UplinkMessage) -> None:
        client = self.client
        if client is None or self.state != "online":
            return
        info = client.publish(topic_for(msg), encode(msg), qos=1, retain=False)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._inflight[info.mid] = msg.seq
            self.stats.published += 1

    # ------------------------------------------------------ going away

    def _detach(self) -> None:
        """Forget the current client and close its socket without DISCONNECT, so the
        broker publishes the Last Will (what a kiosk losing power or signal looks like)."""
        self._release_slot()
        client, self.client = self.client, None
        if self.state == "online":
            self.stats.connected -= 1
        self._inflight.clear()
        self.mangler.reset()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if client is not None:
            sock = client.socket()
            if sock is not None:
                self.loop.unregister(sock)
            _abandon(client)
        self.kiosk.on_disconnected()

    def _lost(self, retry_in: float | None) -> None:
        """The connection is gone: reconnect after `retry_in` or an exponential backoff."""
        if self.state in ("stopped", "waiting") and self.client is None:
            return
        self._detach()
        self.state = "waiting"
        if retry_in is None:
            self.failures += 1
            base = min(30.0, 2.0 ** min(self.failures - 1, 5))
            retry_in = base * self.rng.uniform(0.5, 1.0)
        self._schedule_retry(retry_in)

    def _schedule_retry(self, delay: float) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if delay == float("inf"):
            return
        self.offline_until = time.monotonic() + delay
        self._retry = self.loop.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self.offline_until = None
        if self.state == "waiting" and self.kiosk.powered:
            self.start()

    def drop(self, offline_s: float) -> None:
        """Cut the connection now (no DISCONNECT: the will fires) and stay off `offline_s`
        (`inf`: until `reconnect()`)."""
        if self.state == "stopped":
            return
        if self.state == "queued":
            self.state = "waiting"
        if self.client is not None or self.state != "waiting":
            self._detach()
        self.state = "waiting"
        self._schedule_retry(offline_s)

    def reconnect(self) -> None:
        if self.state == "waiting":
            self._schedule_retry(0.0)

    def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._detach()
        self.state = "stopped"


def _abandon(client: mqtt.Client) -> None:
    """Drop a paho client without DISCONNECT: no callback of it may reach us again."""
    client.on_connect = None
    client.on_disconnect = None
    client.on_publish = None
    client.on_message = None
    client.on_socket_close = None
    client.on_socket_register_write = None
    client.on_socket_unregister_write = None
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
