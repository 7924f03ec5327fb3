"""Wiring the cross-process pieces (shared state, MQTT publisher, command channel) into the API.

Two shapes: the standalone API process builds its own (Redis shared state, a publish-only
MQTT connection with a client id of its own), while the embedded demo reuses the pieces of
the bridge running in the same process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from server.bridge.commands import CommandChannel
from server.bridge.connection import BridgeConnection
from server.bridge.runner import Bridge
from server.config import Settings
from server.core.http import AppServices
from server.core.shared_state import make_shared_state

Hook = Callable[[AppServices], AbstractAsyncContextManager[None]]


def attach_bridge(bridge: Bridge, broker_sync: Callable[[], None] | None = None) -> Hook:
    @asynccontextmanager
    async def hook(svc: AppServices) -> AsyncIterator[None]:
        svc.shared_state = bridge.shared_state
        svc.publisher = bridge.connection
        svc.commands = bridge.commands
        svc.broker_sync = broker_sync
        yield

    return hook


def api_hooks(settings: Settings, *, mosquitto_pid_file: Path | None = None) -> list[Hook]:
    @asynccontextmanager
    async def hook(svc: AppServices) -> AsyncIterator[None]:
        from server.app import make_broker_sync

        state = make_shared_state(settings)
        publisher = BridgeConnection(
            settings,
            subscribe=False,
            client_id=f"api-{socket.gethostname()}-{os.getpid()}",
        )
        publisher.start()
        svc.shared_state = state
        svc.publisher = publisher
        svc.commands = CommandChannel(publisher, state, svc.db)
        svc.broker_sync = make_broker_sync(svc.db, settings, pid_file=mosquitto_pid_file)
        try:
            yield
        finally:
            publisher.stop()
            state.close()

    return [hook]
