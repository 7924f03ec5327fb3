"""The API under uvicorn on a free port beside a WeChat stand-in, over real HTTP both ways
(the stand-in's notifications reach the API the way WeChat's would). For tests that need
riders, deposits and refunds; nothing is monkeypatched."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from server.app import create_app
from server.config import Settings
from server.core.db import Database
from server.payments import signing
from server.payments.wechatpay import WeChatPayClient
from server.runtime import attach_wechat
from server.wechat.miniprogram import MiniProgramClient
from server.wechat.standin import SentNotification, WeChatStandIn

# RSA key generation is the slow part of a stand-in; one set per test session.
MERCHANT_KEY = signing.generate_private_key()
PLATFORM_KEY = signing.generate_private_key()
FORGER_KEY = signing.generate_private_key()
FAST_RETRIES = (0.02, 0.02, 0.05)
NOTIFY_PATH = "/api/v1/payments/wechat/notify"
REFUND_NOTIFY_PATH = "/api/v1/payments/wechat/refund-notify"


@dataclass
class Env:
    api: httpx.Client
    standin: WeChatStandIn
    db: Database
    pay: WeChatPayClient
    settings: Settings

    @property
    def notify_url(self) -> str:
        return self.settings.wechatpay_notify_url

    @property
    def refund_notify_url(self) -> str:
        return self.settings.wechatpay_refund_notify_url


def make_standin(**overrides: Any) -> WeChatStandIn:
    """A stand-in with the shared keys and a notification retry schedule in milliseconds."""
    options: dict[str, Any] = {
        "retry_schedule_s": FAST_RETRIES,
        "merchant_private_key": MERCHANT_KEY,
        "platform_private_key": PLATFORM_KEY,
        "notify_timeout_s": 2.0,
        **overrides,
    }
    return WeChatStandIn(**options)


@contextmanager
def serve(app: Any, sock: socket.socket) -> Iterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", ws="none", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(1000):
        if server.started:
            break
        started.wait(0.01)
    assert server.started, "API did not start"
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def wechat_env(
    db: Database,
    standin: WeChatStandIn,
    tmp_path: Path,
    *,
    notify_url: str | None = None,
    refund_notify_url: str | None = None,
) -> Iterator[Env]:
    """The API on a free port; notify URLs point at it unless given (e.g. a closed port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        data_dir=tmp_path,
        wechat_appid=standin.appid,
        wechat_api_base_url=standin.url,
        wechatpay_base_url=standin.url,
        wechatpay_mchid=standin.mchid,
        wechatpay_notify_url=notify_url or base + NOTIFY_PATH,
        wechatpay_refund_notify_url=refund_notify_url or base + REFUND_NOTIFY_PATH,
        rider_token_ttl_s=3600,
    )
    with (
        MiniProgramClient(standin.appid, standin.secret, base_url=standin.url) as mini,
        WeChatPayClient(standin.pay_config()) as pay,
    ):
        app = create_app(settings, db=db, hooks=[attach_wechat(mini, pay)])
        with serve(app, sock), httpx.Client(base_url=base, timeout=10) as api:
            yield Env(api=api, standin=standin, db=db, pay=pay, settings=settings)


# -- rider steps ----------------------------------------------------------------------------


def login(env: Env, openid: str | None = None) -> dict[str, str]:
    """Log a rider in; returns the Authorization header."""
    r = env.api.post("/api/v1/riders/login", json={"code": env.standin.issue_login_code(openid)})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def me(env: Env, auth: dict[str, str]) -> dict[str, Any]:
    r = env.api.get("/api/v1/riders/me", headers=auth)
    assert r.status_code == 200, r.text
    return dict(r.json())


def pay_deposit(env: Env, auth: dict[str, str], key: str = "tap-1") -> str:
    """Start the deposit, pay it at the stand-in and wait until the API acknowledged the
    payment notification; returns the out_trade_no. The deposit is held afterwards."""
    r = env.api.post("/api/v1/deposits", headers={**auth, "Idempotency-Key": key})
    assert r.status_code == 201, r.text
    out_trade_no = str(r.json()["out_trade_no"])
    env.standin.pay(out_trade_no)
    sent = last_notification(env, "TRANSACTION.SUCCESS")
    assert sent.wait_acknowledged(), sent.attempts
    return out_trade_no


def notifications_of(env: Env, event_type: str) -> list[SentNotification]:
    return [n for n in list(env.standin.notifications) if n.event_type == event_type]


def last_notification(env: Env, event_type: str) -> SentNotification:
    found = notifications_of(env, event_type)
    assert found, f"the stand-in sent no {event_type} notification"
    return found[-1]


def post_signed(env: Env, path: str, body: str, headers: dict[str, str]) -> httpx.Response:
    """POST a notification body with the given Wechatpay-* headers (replay, forge, tamper)."""
    return env.api.post(
        path, content=body.encode(), headers={**headers, "Content-Type": "application/json"}
    )
