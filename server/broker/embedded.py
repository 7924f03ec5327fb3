"""The in-process MQTT broker of the embedded default (SPEC §6), on amqtt 0.12.

It runs in its own thread with its own asyncio loop and enforces the same rules as the
production Mosquitto, read from the same files: `$7$` PBKDF2 password hashes (anonymous
refused) and the Mosquitto ACL file (%u patterns, `+`/`#` wildcards) for publish,
subscribe and delivery. Both files are re-read when their mtime changes, which stands in
for Mosquitto's SIGHUP reload.

amqtt differences that matter here:
- no shared subscriptions: a `$share/...` SUBSCRIBE is refused (SUBACK 0x80) so a bridge
  that forgot it is embedded fails loudly; the embedded default runs one bridge that
  subscribes to the plain filter;
- a refused SUBSCRIBE gets SUBACK 0x80 (Mosquitto 2.0 accepts it and delivers nothing);
- a publish outside the ACL is acknowledged and dropped, as in Mosquitto (MQTT 3.1.1 has no
  negative PUBACK).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext
from amqtt.errors import AMQTTError
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from server.broker.credentials import parse_password_file, verify_password
from server.broker.mosquitto import MosquittoAcl

log = logging.getLogger(__name__)


class _SubscriptionTable(dict[str, list[tuple[Session, int]]]):
    """amqtt's topic filter -> [(session, qos)] map, iterated over a snapshot.

    amqtt 0.12.1 walks this map while awaiting (the ACL check of each delivery, the
    retained messages at each CONNECT), and a client subscribing, unsubscribing or taking
    over its session meanwhile changes it: "dictionary changed size during iteration",
    seen with a reconnecting fleet. Iterating a copy mends every such walk at once.
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.keys()))

    def items(self) -> list[tuple[str, list[tuple[Session, int]]]]:  # type: ignore[override]
        return [(k, list(v)) for k, v in super().items()]


class _SafeBroker(Broker):  # type: ignore[misc]
    """amqtt 0.12.1 with three defects mended (same methods otherwise):

    - its subscription map was iterated while it changed (see `_SubscriptionTable`);
    - a client connecting was sent the retained messages of every filter any client was
      subscribed to, unchecked against the ACL: kiosk A got kiosk B's retained playlist;
    - a client dropping before CONNECT left its socket open until garbage collection, and
      so did every client still connected when the broker shut down (its loop then closed,
      the socket's `ResourceWarning` surfaced at some later garbage collection).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subscriptions = _SubscriptionTable()
        self._client_streams: set[asyncio.StreamWriter] = set()

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        """amqtt's per-connection task, with the client's socket closed however it ends
        (also when the task is cancelled at shutdown). A cancelled task ends quietly: on
        Python 3.11, `start_server`'s done-callback logs a cancelled connection task as an
        error."""
        self._client_streams.add(writer)
        try:
            await super().stream_connected(reader, writer, listener_name)
        except asyncio.CancelledError:
            pass  # the broker is stopping (`EmbeddedBroker._run`)
        finally:
            self._client_streams.discard(writer)
            writer.close()

    def close_client_streams(self) -> None:
        """Close the sockets of the clients still connected (after `shutdown`)."""
        for writer in list(self._client_streams):
            writer.close()

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> Any:
        # amqtt leaves the socket of a client that drops before CONNECT open until the
        # garbage collector finds it; close it here.
        try:
            return await super()._initialize_client_session(
                reader, writer, remote_address, remote_port
            )
        except AMQTTError:
            with contextlib.suppress(Exception):
                await writer.close()
            raise

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        """The retained messages matching one of `session`'s own filters that the ACL lets
        it read, at the QoS it was granted (MQTT 3.1.1 §3.3.1.3). amqtt calls this after a
        SUBSCRIBE and, at CONNECT, for every filter in the broker: other clients' filters
        are skipped here."""
        topic_filter = subscription[0]
        mine = [
            q
            for s, q in self._subscriptions.get(topic_filter, ())
            if s.client_id == session.client_id
        ]
        handler = self._get_handler(session)
        if not mine or handler is None:
            return
        granted = mine[0]
        sends = []
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic=topic, action=Action.RECEIVE):
                continue
            qos = min(granted, retained.qos or granted)
            sends.append(
                asyncio.ensure_future(
                    handler.mqtt_publish(retained.topic, retained.data, qos, retain=True)
                )
            )
        for failed in await asyncio.gather(*sends, return_exceptions=True):
            if isinstance(failed, BaseException):  # no PUBACK: the client dropped meanwhile
                log.info("retained message to %s not acknowledged: %s", session.client_id, failed)


class _ReloadingFile:
    """A file parsed again whenever its mtime or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._text = ""

    def text(self) -> str:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._text = None, ""
            return ""
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._text = self.path.read_text(encoding="utf-8")
            self._stamp = stamp
        return self._text


class PasswordFileAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accepts a CONNECT only with a username and a password matching its `$7$` hash."""

    @dataclass
    class Config:
        password_file: str = ""

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._file = _ReloadingFile(Path(self.config.password_file))
        self._users: dict[str, str] = {}
        self._source = ""

    def _lookup(self, username: str) -> str | None:
        text = self._file.text()
        if text is not self._source:
            self._users = parse_password_file(text)
            self._source = text
        return self._users.get(username)

    async def authenticate(self, *, session: Session) -> bool:
        if not session.username:
            return False
        encoded = self._lookup(session.username)
        if encoded is None:
            return False
        return verify_password(session.password or "", encoded)


class AclFileTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Applies the Mosquitto ACL file to publish, subscribe and receive."""

    @dataclass
    class Config:
        acl_file: str = ""

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._file = _ReloadingFile(Path(self.config.acl_file))
        self._acl = MosquittoAcl()
        self._source = ""

    def _current(self) -> MosquittoAcl:
        text = self._file.text()
        if text is not self._source:
            self._acl = MosquittoAcl.parse(text)
            self._source = text
        return self._acl

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        if session is None or not topic or not session.username:
            return False
        acl = self._current()
        username, client_id = session.username, session.client_id
        if action == Action.PUBLISH:
            return acl.allows(username, topic, "write", client_id)
        if action == Action.RECEIVE:
            return acl.allows(username, topic, "read", client_id)
        if action == Action.SUBSCRIBE:
            if topic.startswith("$share/"):
                log.warning(
                    "embedded broker has no shared subscriptions; refused %r from %s",
                    topic,
                    client_id,
                )
                return False
            return acl.allows_subscribe(username, topic, client_id)
        return False


def broker_config(host: str, port: int, password_file: Path, acl_file: Path) -> dict[str, Any]:
    """amqtt 0.12 config: `plugins` maps class paths to their `Config` fields. Listing
    plugins replaces amqtt's defaults (anonymous auth, $SYS, packet logging)."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            f"{__name__}.PasswordFileAuthPlugin": {"password_file": str(password_file)},
            f"{__name__}.AclFileTopicPlugin": {"acl_file": str(acl_file)},
        },
    }


class EmbeddedBroker:
    """`start()` returns once the listener accepts connections; `stop()` shuts it down."""

    def __init__(self, host: str, port: int, password_file: Path, acl_file: Path) -> None:
        self.host = host
        self.port = port
        self.password_file = Path(password_file)
        self.acl_file = Path(acl_file)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            raise RuntimeError("embedded broker already running")
        self._started.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="mqtt-embedded-broker", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"embedded broker did not start within {timeout}s")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError(f"embedded broker failed to start: {self._error}") from self._error

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            log.exception("embedded broker stopped with an error")
        finally:
            self._started.set()
            # Connection tasks amqtt left running: cancelled, each closes its socket.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(asyncio.sleep(0))  # the transports' close callbacks
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        broker = _SafeBroker(
            broker_config(self.host, self.port, self.password_file, self.acl_file),
            loop=asyncio.get_running_loop(),
        )
        await broker.start()
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await broker.shutdown()
            broker.close_client_streams()
