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
from server.payments import signing
from server.payments.wechatpay import WeChatPayClient, WeChatPayConfig
from server.wechat.miniprogram import MiniProgramClient

Hook = Callable[[AppServices], AbstractAsyncContextManager[None]]


def wechatpay_config_from(settings: Settings) -> WeChatPayConfig:
    """The WeChat Pay client configuration the settings describe (keys read from files)."""
    return WeChatPayConfig(
        mchid=settings.wechatpay_mchid,
        appid=settings.wechat_appid,
        merchant_serial=settings.wechatpay_merchant_serial,
        merchant_private_key=signing.load_private_key(
            Path(settings.wechatpay_merchant_private_key_file).read_bytes()
        ),
        apiv3_key=signing.apiv3_key_bytes(settings.wechatpay_apiv3_key),
        platform_public_keys={
            settings.wechatpay_platform_serial: signing.load_public_key(
                Path(settings.wechatpay_platform_public_key_file).read_bytes()
            )
        },
        base_url=settings.wechatpay_base_url,
    )


def attach_wechat(wechat: MiniProgramClient | None, wechatpay: WeChatPayClient | None) -> Hook:
    """Hand ready-made clients to the API (tests: clients built from a `WeChatStandIn`).
    The caller owns and closes them."""

    @asynccontextmanager
    async def hook(svc: AppServices) -> AsyncIterator[None]:
        svc.wechat = wechat
        svc.wechatpay = wechatpay
        yield

    return hook


def wechat_hooks(settings: Settings) -> list[Hook]:
    """Build the WeChat clients from settings when configured, close them at shutdown.
    Without configuration the rider login and deposit endpoints answer 503."""

    @asynccontextmanager
    async def hook(svc: AppServices) -> AsyncIterator[None]:
        wechat = (
            MiniProgramClient(
                settings.wechat_appid,
                settings.wechat_app_secret,
                base_url=settings.wechat_api_base_url,
            )
            if settings.wechat_login_configured
            else None
        )
        pay = (
            WeChatPayClient(wechatpay_config_from(settings))
            if settings.wechatpay_configured
            else None
        )
        svc.wechat, svc.wechatpay = wechat, pay
        try:
            yield
        finally:
            svc.wechat = svc.wechatpay = None
            if wechat is not None:
                wechat.close()
            if pay is not None:
                pay.close()

    return [hook]


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

    return [hook, *wechat_hooks(settings)]
