"""A bridge process: MQTT connection + dispatcher + command channel.

`umbrella bridge` calls `run_bridge(settings)`; the embedded demo runs a `Bridge` in-process
(with `shared=False`: the embedded amqtt broker has no shared subscriptions) and may reuse
its `commands` channel for the API.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from firmware_protocol import topics
from server.bridge.commands import CommandChannel
from server.bridge.connection import BridgeConnection
from server.bridge.dispatch import Dispatcher
from server.config import Settings
from server.core.db import Database
from server.core.shared_state import SharedState, make_shared_state

log = logging.getLogger(__name__)


class Bridge:
    """Owns nothing it was given: a `db` or `shared_state` passed in is not closed by stop()."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database | None = None,
        shared_state: SharedState | None = None,
        shared: bool | None = None,
        client_id: str | None = None,
        uplink_filter: str | None = None,
    ) -> None:
        self.settings = settings
        self._own_db = db is None
        self._own_state = shared_state is None
        self.db = db or Database(settings.db_url)
        self.shared_state = shared_state or make_shared_state(settings)
        self.connection = BridgeConnection(
            settings,
            sink=lambda item: self.dispatcher.submit(item),
            shared=(not settings.embedded_broker) if shared is None else shared,
            client_id=client_id,
            uplink_filter=uplink_filter or topics.UPLINK_FILTER,
        )
        self.dispatcher = Dispatcher.from_settings(
            settings, self.db, self.shared_state, acker=self.connection
        )
        self.commands = CommandChannel(self.connection, self.shared_state, self.db)

    def start(self) -> None:
        self.dispatcher.start()
        self.connection.start()
        log.info(
            "bridge %s started: %s on %s:%d",
            self.connection.client_id,
            self.connection.topic_filter,
            self.settings.mqtt_host,
            self.settings.mqtt_port,
        )

    def stop(self, *, retire: bool = False) -> None:
        """Apply and acknowledge what already arrived, then disconnect.

        The subscription stays with the persistent session, so the broker keeps this
        bridge's share while it restarts: nothing is lost, and a lone bridge gets it all
        back. Only a bridge that is `retire`d for good (other bridges remain in the group)
        leaves the shared subscription first, so its share goes to the others instead of
        waiting for a client id that never returns.
        """
        if retire:
            self.connection.leave()
        self.dispatcher.stop(drain=True)
        self.connection.stop()
        if self._own_state:
            self.shared_state.close()
        if self._own_db:
            self.db.dispose()
        log.info("bridge %s stopped: %s", self.connection.client_id, _fmt(self.dispatcher.stats()))


def run_bridge(
    settings: Settings,
    *,
    stop_event: threading.Event | None = None,
    stats_every_s: float = 60.0,
) -> None:
    """Run a bridge until `stop_event` is set (or SIGINT/SIGTERM when run as a command)."""
    stop = stop_event or threading.Event()
    if stop_event is None and threading.current_thread() is threading.main_thread():

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("bridge: signal %d, stopping", signum)
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)

    bridge = Bridge(settings)
    bridge.start()
    try:
        while not stop.wait(stats_every_s):
            log.info(
                "bridge %s stats: %s", bridge.connection.client_id, _fmt(bridge.dispatcher.stats())
            )
    finally:
        bridge.stop()


def _fmt(stats: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "idle"
