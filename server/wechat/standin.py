"""A local WeChat: the parts of the mini-program server API and WeChat Pay API v3 we use.

WeChat cannot be reached from tests, CI or the embedded demo, so this process plays it
over real HTTP, speaking the documented protocol: it checks the merchant's `Authorization`
signature, signs every answer with its own platform key, and sends notifications signed and
AEAD_AES_256_GCM-encrypted with the APIv3 key, retrying until the merchant answers 200/204
(WeChat's schedule is 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h; tests pass a
schedule in milliseconds).

Subscribe messages (订阅消息) too: the stable access token (`POST /cgi-bin/stable_token`,
normal and force-refresh modes, 7200 s, a new token only in the last 5 minutes of the old
one) and `POST /cgi-bin/message/subscribe/send`, which checks the token (40001 / 42001), the
template id against the templates it knows (40037; by default the ones our settings name),
and each value against WeChat's rules for its type (47003: thing at most 20 characters,
amount, time, phrase...), then records the message.

Profit sharing (分账, partners' revenue-share payouts): `POST /v3/profitsharing/orders` and
`GET /v3/profitsharing/orders/{out_order_no}?transaction_id=`. The same out_order_no is the
same order (answered again, nothing split twice); a split larger than what the transaction
has left is NOT_ENOUGH. Besides paid orders it keeps one settlement transaction
(`STANDIN_SETTLEMENT_TRANSACTION_ID`) with no limit, standing in for the platform's own
funds (real WeChat splits only its own payments: see server/revenue/README.md). Splits finish
at once (WeChat processes them asynchronously: PROCESSING, then FINISHED); receivers need
not be added first (WeChat wants `receivers/add` beforehand).

What it does not do: the real risk checks, https-only notify URLs (a local receiver is plain
http), bills, the platform-certificate download endpoint (the client is
configured with the platform public key and serial, as with WeChat's 微信支付公钥 mode), and
the rider's side of subscriptions: every rider is subscribed to every template, without the
one-time quota, unless a test calls `refuse_subscribe`.

Test hooks, in-process and over HTTP under `/_standin/`: `issue_login_code`, `pay`,
`complete_refund`, `fail_next`, `fail_next_code2session`, `notifications` (every
notification sent, with its raw body and last headers, to replay, tamper with or forge);
for subscribe messages `sent_messages`, `fail_next_subscribe`, `fail_next_token`,
`expire_access_tokens` and `refuse_subscribe`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import re
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.config import Settings
from server.core.clock import clock
from server.notifications.templates import TemplateSet
from server.payments import signing
from server.payments.wechatpay import CHINA, WeChatPayConfig, rfc3339

# WeChat Pay's documented notification retry schedule (回调通知, 通知频率), in seconds.
WECHAT_RETRY_SCHEDULE_S: tuple[float, ...] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)  # fmt: skip

# Codes the simulator can make up without asking the stand-in: `wxcode.<user>.<anything>`;
# the openid depends on <user> only, so the same simulated rider logs in as the same openid.
LOGIN_CODE_PATTERN = re.compile(r"^wxcode\.(?P<user>[A-Za-z0-9_-]{1,64})\.[A-Za-z0-9_-]{1,64}$")


def make_login_code(user: str) -> str:
    return f"wxcode.{user}.{secrets.token_hex(6)}"


def openid_for(appid: str, user: str) -> str:
    """A stable, openid-shaped (28 characters, starting with "o") id per appid and user."""
    digest = hashlib.sha256(f"{appid}:{user}".encode()).digest()
    return "o" + base64.urlsafe_b64encode(digest).decode()[:27]


@dataclass
class Order:
    appid: str
    mchid: str
    out_trade_no: str
    description: str
    notify_url: str
    total: int
    currency: str
    openid: str
    prepay_id: str
    attach: str | None
    state: str = "NOTPAY"
    #: The prepay's `time_expire`: the rider can no longer pay after it.
    expires_at: datetime | None = None
    transaction_id: str | None = None
    success_time: str | None = None
    refunded: int = 0

    def view(self) -> dict[str, Any]:
        """The 查询订单 answer."""
        out: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": self.out_trade_no,
            "trade_type": "JSAPI",
            "trade_state": self.state,
            "trade_state_desc": _TRADE_STATE_DESC[self.state],
            "payer": {"openid": self.openid},
            "amount": {"total": self.total, "currency": self.currency},
        }
        if self.attach is not None:
            out["attach"] = self.attach
        if self.transaction_id is not None:
            out["transaction_id"] = self.transaction_id
            out["bank_type"] = "OTHERS"
            out["success_time"] = self.success_time
            out["amount"].update(payer_total=self.total, payer_currency=self.currency)
        return out


#: The stand-in's settlement transaction: profit sharing may split any amount from it.
STANDIN_SETTLEMENT_TRANSACTION_ID = "4200000000000000000000000000"
_OUT_ORDER_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
_RECEIVER_TYPES = ("MERCHANT_ID", "PERSONAL_OPENID")


@dataclass
class ProfitSharingOrder:
    transaction_id: str
    out_order_no: str
    order_id: str
    receivers: list[dict[str, Any]]
    create_time: str
    state: str = "FINISHED"

    def view(self) -> dict[str, Any]:
        """The 请求分账 / 查询分账结果 answer."""
        return {
            "transaction_id": self.transaction_id,
            "out_order_no": self.out_order_no,
            "order_id": self.order_id,
            "state": self.state,
            "receivers": [
                {
                    **r,
                    "result": "SUCCESS",
                    "detail_id": f"36011111111111111111111{n:03d}",
                    "create_time": self.create_time,
                    "finish_time": self.create_time,
                }
                for n, r in enumerate(self.receivers, 1)
            ],
        }

    @property
    def amount(self) -> int:
        return sum(int(r["amount"]) for r in self.receivers)


_TRADE_STATE_DESC = {
    "NOTPAY": "未支付",
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "CLOSED": "已关闭",
}


@dataclass
class Refund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str
    refund: int
    total: int
    notify_url: str | None
    create_time: str
    status: str = "PROCESSING"
    success_time: str | None = None

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "refund_id": self.refund_id,
            "out_refund_no": self.out_refund_no,
            "transaction_id": self.transaction_id,
            "out_trade_no": self.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": self.create_time,
            "status": self.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": self.total,
                "refund": self.refund,
                "payer_total": self.total,
                "payer_refund": self.refund,
                "settlement_refund": self.refund,
                "settlement_total": self.total,
                "discount_refund": 0,
                "currency": "CNY",
            },
        }
        if self.success_time is not None:
            out["success_time"] = self.success_time
        return out


@dataclass
class SentNotification:
    """One notification as WeChat sent it: replay `body` with `headers` to send it again."""

    url: str
    event_type: str
    body: str
    resource: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    attempts: list[int | str] = field(default_factory=list)  # HTTP status or error name
    acknowledged: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def wait_acknowledged(self, timeout: float = 5.0) -> bool:
        return self.acknowledged.wait(timeout)


@dataclass(frozen=True)
class SubscribeMessageSent:
    """One subscribe message WeChat accepted (subscribeMessage.send), as the rider sees it."""

    msgid: int
    touser: str
    template_id: str
    data: dict[str, str]
    page: str | None
    miniprogram_state: str
    lang: str
    sent_at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "msgid": self.msgid,
            "touser": self.touser,
            "template_id": self.template_id,
            "data": self.data,
            "page": self.page,
            "miniprogram_state": self.miniprogram_state,
            "lang": self.lang,
            "sent_at": self.sent_at.isoformat(),
        }


@dataclass
class _AccessToken:
    value: str
    expires_at: datetime
    revoked: bool = False


#: WeChat's lifetime of an access token, and the last stretch of it in which the stable-token
#: API's normal mode hands out the next token (the old one still works until it expires).
ACCESS_TOKEN_TTL_S = 7200
ACCESS_TOKEN_RENEW_S = 300


class StandInError(Exception):
    """A test asked the stand-in for something WeChat would refuse (unknown order, ...)."""


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class WeChatStandIn:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mchid: str = "1900000109",
        appid: str = "wxd678efh567hg6787",
        secret: str | None = None,
        apiv3_key: bytes | None = None,
        merchant_private_key: rsa.RSAPrivateKey | None = None,
        merchant_public_key: rsa.RSAPublicKey | None = None,
        merchant_serial: str | None = None,
        platform_private_key: rsa.RSAPrivateKey | None = None,
        platform_serial: str | None = None,
        retry_schedule_s: Sequence[float] = WECHAT_RETRY_SCHEDULE_S,
        notify_timeout_s: float = 5.0,
        auto_complete_refunds: bool = True,
        subscribe_templates: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.host, self._port = host, port
        self.mchid, self.appid = mchid, appid
        self.secret = secret or secrets.token_hex(16)
        self.apiv3_key = signing.apiv3_key_bytes(apiv3_key or secrets.token_hex(16).encode())
        # The merchant's private key stays with the merchant; the stand-in only needs the
        # public half. When it generates the pair (tests, demo) it keeps both to hand out.
        if merchant_public_key is None:
            merchant_private_key = merchant_private_key or signing.generate_private_key()
            merchant_public_key = merchant_private_key.public_key()
        self.merchant_private_key = merchant_private_key
        self.merchant_public_key = merchant_public_key
        self.merchant_serial = merchant_serial or signing.generate_serial()
        self.platform_private_key = platform_private_key or signing.generate_private_key()
        self.platform_public_key = self.platform_private_key.public_key()
        self.platform_serial = platform_serial or signing.generate_serial()
        self.retry_schedule_s = tuple(retry_schedule_s)
        self.notify_timeout_s = notify_timeout_s
        self.auto_complete_refunds = auto_complete_refunds
        # Template id -> its keys. By default the templates the settings name (UMB_WECHAT_TPL_*),
        # so a stand-in and a server started from the same environment agree.
        if subscribe_templates is None:
            subscribe_templates = TemplateSet.from_settings(Settings()).catalog()
        self.subscribe_templates = {k: tuple(v) for k, v in subscribe_templates.items()}
        #: Seconds each subscribe send takes (tests widen race windows with it).
        self.subscribe_latency_s = 0.0

        self.orders: dict[str, Order] = {}
        self.refunds: dict[str, Refund] = {}
        self.profit_sharing_orders: dict[str, ProfitSharingOrder] = {}
        #: Profit-sharing calls whose split happens but whose answer is lost (a 500 after
        #: the money moved): the merchant must retry with the same out_order_no.
        self.lose_profit_sharing_answers = 0
        self.notifications: list[SentNotification] = []
        self.sessions: dict[str, str] = {}  # openid -> last session_key
        self.requests_seen: list[tuple[str, str, int]] = []  # (method, path, status)
        self._issued_codes: dict[str, str] = {}
        self._used_codes: set[str] = set()
        self._forced_failures: dict[str, list[tuple[int, str, str]]] = {}
        self._before_next: dict[str, Callable[[], object]] = {}
        self._forced_errcodes: list[int] = []
        self._access_tokens: dict[str, _AccessToken] = {}
        self._current_token: _AccessToken | None = None
        #: Every stable_token call: (force_refresh, errcode), errcode 0 when a token was given.
        self.token_requests: list[tuple[bool, int]] = []
        self.subscribe_messages: list[SubscribeMessageSent] = []
        #: Every subscribeMessage.send answered, delivered or not: (touser, errcode).
        self.subscribe_attempts: list[tuple[str, int]] = []
        self._forced_subscribe: list[int] = []
        self._forced_token: list[int] = []
        self._refusals: set[tuple[str, str | None]] = set()
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.app = self._build_app()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("stand-in not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _bind(self) -> tuple[uvicorn.Server, socket.socket]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._socket = sock
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", ws="none", access_log=False
        )
        self._server = uvicorn.Server(config)
        return self._server, sock

    def start(self, timeout_s: float = 10.0) -> WeChatStandIn:
        server, sock = self._bind()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="wechat-standin", daemon=True
        )
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout_s / 0.01)):
            if server.started:
                return self
            deadline.wait(0.01)
        raise RuntimeError("WeChat stand-in did not start")

    def serve(
        self,
        credentials_out: Path | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        """Run in the calling thread until SIGINT/SIGTERM (for a CLI command); with
        `credentials_out`, first write what a separate server process needs there."""
        server, sock = self._bind()
        if credentials_out is not None:
            self.write_credentials(credentials_out)
        if announce is not None:
            announce(self.url)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                server.run(sockets=[sock])
        finally:
            self.stop()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for worker in list(self._workers):
            worker.join(timeout=self.notify_timeout_s + 1)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> WeChatStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pay_config(self, timeout_s: float = 10.0) -> WeChatPayConfig:
        """A client configuration that talks to this stand-in as its merchant."""
        if self.merchant_private_key is None:
            raise StandInError("the merchant private key was not given to the stand-in")
        return WeChatPayConfig(
            mchid=self.mchid,
            appid=self.appid,
            merchant_serial=self.merchant_serial,
            merchant_private_key=self.merchant_private_key,
            apiv3_key=self.apiv3_key,
            platform_public_keys={self.platform_serial: self.platform_public_key},
            base_url=self.url,
            timeout_s=timeout_s,
        )

    def write_credentials(self, directory: Path) -> Path:
        """Keys and ids a separate server process needs to talk to this stand-in."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.merchant_private_key is not None:
            (directory / "merchant_private_key.pem").write_text(
                signing.private_key_pem(self.merchant_private_key)
            )
        (directory / "platform_public_key.pem").write_text(
            signing.public_key_pem(self.platform_public_key)
        )
        facts = {
            "mchid": self.mchid,
            "appid": self.appid,
            "secret": self.secret,
            "apiv3_key": self.apiv3_key.decode(),
            "merchant_serial": self.merchant_serial,
            "platform_serial": self.platform_serial,
            "url": self.url if self._socket is not None else None,
        }
        path = directory / "standin.json"
        path.write_text(json.dumps(facts, indent=2))
        return path

    # -- test hooks -----------------------------------------------------------------------

    def issue_login_code(self, openid: str | None = None) -> str:
        """A one-time `wx.login` code that code2session exchanges for `openid`."""
        code = "0" + secrets.token_hex(15)
        with self._lock:
            self._issued_codes[code] = openid or openid_for(self.appid, secrets.token_hex(8))
        return code

    def fail_next_code2session(self, *errcodes: int) -> None:
        """The next code2session calls answer these errcodes (45011, -1, ...), in order."""
        with self._lock:
            self._forced_errcodes.extend(errcodes)

    def fail_next(
        self,
        operation: str,
        n: int = 1,
        *,
        status: int = 500,
        code: str = "SYSTEM_ERROR",
        message: str = "系统错误",
    ) -> None:
        """The next `n` calls of `operation` ("prepay", "query_order", "refund",
        "query_refund", "close_order", "profit_sharing", "query_profit_sharing") fail before
        changing anything."""
        with self._lock:
            self._forced_failures.setdefault(operation, []).extend([(status, code, message)] * n)

    def before_next(self, operation: str, action: Callable[[], object]) -> None:
        """Run `action` (e.g. the rider paying) when the next call of `operation` arrives,
        before it is answered: what happens at WeChat between two of the merchant's calls."""
        with self._lock:
            self._before_next[operation] = action

    def fail_next_refunds(self, n: int = 1) -> None:
        self.fail_next("refund", n)

    def fail_next_subscribe(self, *errcodes: int) -> None:
        """The next subscribeMessage.send calls answer these errcodes (43101, -1, 45009,
        42001...), in order, delivering nothing."""
        with self._lock:
            self._forced_subscribe.extend(errcodes)

    def fail_next_token(self, *errcodes: int) -> None:
        """The next stable_token calls answer these errcodes (-1, 45009, 40164...)."""
        with self._lock:
            self._forced_token.extend(errcodes)

    def expire_access_tokens(self) -> None:
        """Every access token handed out so far expires now (WeChat answers 42001), whatever
        the client believes; the next stable_token call gives a new one."""
        now = clock.now()
        with self._lock:
            for token in self._access_tokens.values():
                token.expires_at = min(token.expires_at, now - timedelta(seconds=1))

    def refuse_subscribe(self, openid: str, template_id: str | None = None) -> None:
        """The rider turned these messages off (or never subscribed): 43101 for `template_id`,
        or for every template when None."""
        with self._lock:
            self._refusals.add((openid, template_id))

    def sent_messages(self, openid: str | None = None) -> list[SubscribeMessageSent]:
        """Subscribe messages delivered, oldest first; only `openid`'s when given."""
        with self._lock:
            return [m for m in self.subscribe_messages if openid is None or m.touser == openid]

    def find_order(self, ref: str) -> Order:
        with self._lock:
            if ref in self.orders:
                return self.orders[ref]
            for order in self.orders.values():
                if order.prepay_id == ref:
                    return order
        raise StandInError(f"no order with out_trade_no or prepay_id {ref!r}")

    def pay(self, ref: str) -> Order:
        """The rider pays (by prepay_id or out_trade_no): WeChat notifies the merchant."""
        with self._lock:
            order = self.find_order(ref)
            if order.state != "NOTPAY":
                raise StandInError(f"order {order.out_trade_no} is {order.state}")
            if order.expires_at is not None and clock.now() > order.expires_at:
                raise StandInError(f"order {order.out_trade_no} expired at {order.expires_at}")
            order.state = "SUCCESS"
            order.transaction_id = f"4200{next(self._seq):06d}{secrets.randbelow(10**18):018d}"
            order.success_time = rfc3339(clock.now())
            resource = order.view()
        self.notify(order.notify_url, "TRANSACTION.SUCCESS", "支付成功", "transaction", resource)
        return order

    def complete_refund(self, out_refund_no: str) -> Refund:
        with self._lock:
            refund = self.refunds.get(out_refund_no)
            if refund is None:
                raise StandInError(f"no refund {out_refund_no!r}")
            if refund.status != "PROCESSING":
                return refund
            refund.status = "SUCCESS"
            refund.success_time = rfc3339(clock.now())
            resource = {
                "mchid": self.mchid,
                "out_trade_no": refund.out_trade_no,
                "transaction_id": refund.transaction_id,
                "out_refund_no": refund.out_refund_no,
                "refund_id": refund.refund_id,
                "refund_status": "SUCCESS",
                "success_time": refund.success_time,
                "user_received_account": "支付用户零钱",
                "amount": {
                    "total": refund.total,
                    "refund": refund.refund,
                    "payer_total": refund.total,
                    "payer_refund": refund.refund,
                },
            }
        if refund.notify_url:
            self.notify(refund.notify_url, "REFUND.SUCCESS", "退款成功", "refund", resource)
        return refund

    def build_notification(
        self, event_type: str, summary: str, original_type: str, resource: dict[str, Any]
    ) -> str:
        """The JSON body of a notification, resource encrypted with the APIv3 key."""
        nonce = signing.nonce_str(12)
        plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
        envelope = {
            "id": str(uuid.uuid4()),
            "create_time": rfc3339(clock.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": signing.AEAD_ALGORITHM,
                "ciphertext": signing.aead_encrypt(self.apiv3_key, nonce, original_type, plaintext),
                "associated_data": original_type,
                "nonce": nonce,
            },
        }
        return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))

    def sign_headers(
        self,
        body: str,
        *,
        timestamp: int | None = None,
        nonce: str | None = None,
        private_key: rsa.RSAPrivateKey | None = None,
        serial: str | None = None,
    ) -> dict[str, str]:
        """Wechatpay-* headers for `body`; override a part to forge or age a message."""
        ts = str(timestamp if timestamp is not None else int(clock.now().timestamp()))
        nonce = nonce or signing.nonce_str()
        key = private_key or self.platform_private_key
        return {
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signing.rsa_sign(key, signing.response_message(ts, nonce, body)),
            "Wechatpay-Serial": serial or self.platform_serial,
            "Wechatpay-Signature-Type": signing.SCHEMA,
        }

    def notify(
        self,
        url: str,
        event_type: str,
        summary: str,
        original_type: str,
        resource: dict[str, Any],
    ) -> SentNotification:
        sent = SentNotification(
            url=url,
            event_type=event_type,
            body=self.build_notification(event_type, summary, original_type, resource),
            resource=resource,
        )
        with self._lock:
            self.notifications.append(sent)
        worker = threading.Thread(
            target=self._deliver, args=(sent,), name="wechat-standin-notify", daemon=True
        )
        self._track(worker)
        return sent

    def _track(self, worker: threading.Thread) -> None:
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(worker)
        worker.start()

    def _deliver(self, sent: SentNotification) -> None:
        """POST until the merchant answers 200 or 204 (回调通知: 应答), then stop."""
        try:
            with httpx.Client(timeout=self.notify_timeout_s) as http:
                for delay in (0.0, *self.retry_schedule_s):
                    if delay and self._stopping.wait(delay):
                        return
                    if self._stopping.is_set():
                        return
                    # Each attempt is signed afresh, so a late retry is not stale.
                    sent.headers = self.sign_headers(sent.body)
                    outcome: int | str
                    try:
                        response = http.post(
                            sent.url,
                            content=sent.body.encode(),
                            headers={**sent.headers, "Content-Type": "application/json"},
                        )
                        outcome = response.status_code
                    except httpx.HTTPError as exc:
                        outcome = type(exc).__name__
                    sent.attempts.append(outcome)
                    if outcome in (200, 204):
                        sent.acknowledged.set()
                        return
        finally:
            sent.finished.set()

    # -- HTTP -----------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        routes = [
            Route("/sns/jscode2session", self._h_code2session, methods=["GET"]),
            Route("/v3/pay/transactions/jsapi", self._h_prepay, methods=["POST"]),
            Route(
                "/v3/pay/transactions/out-trade-no/{out_trade_no}",
                self._h_query_order,
                methods=["GET"],
            ),
            Route(
                "/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
                self._h_close_order,
                methods=["POST"],
            ),
            Route("/v3/refund/domestic/refunds", self._h_refund, methods=["POST"]),
            Route(
                "/v3/refund/domestic/refunds/{out_refund_no}",
                self._h_query_refund,
                methods=["GET"],
            ),
            Route("/v3/profitsharing/orders", self._h_profit_sharing, methods=["POST"]),
            Route(
                "/v3/profitsharing/orders/{out_order_no}",
                self._h_query_profit_sharing,
                methods=["GET"],
            ),
            Route("/_standin/pay", self._h_admin_pay, methods=["POST"]),
            Route(
                "/_standin/refunds/{out_refund_no}/complete",
                self._h_admin_complete_refund,
                methods=["POST"],
            ),
            Route("/_standin/login-codes", self._h_admin_login_code, methods=["POST"]),
            Route("/_standin/notifications", self._h_admin_notifications, methods=["GET"]),
            Route("/_standin/platform-key", self._h_admin_platform_key, methods=["GET"]),
            Route("/cgi-bin/stable_token", self._h_stable_token, methods=["POST"]),
            Route("/cgi-bin/message/subscribe/send", self._h_subscribe_send, methods=["POST"]),
            Route(
                "/_standin/subscribe-messages",
                self._h_admin_subscribe_messages,
                methods=["GET"],
            ),
            Route(
                "/_standin/subscribe-failures",
                self._h_admin_subscribe_failures,
                methods=["POST"],
            ),
            Route(
                "/_standin/subscribe-refusals",
                self._h_admin_subscribe_refusals,
                methods=["POST"],
            ),
        ]
        return Starlette(routes=routes)

    def _signed(self, status: int, payload: dict[str, Any] | None) -> Response:
        body = "" if payload is None else json.dumps(payload, ensure_ascii=False)
        headers = {**self.sign_headers(body), "Request-ID": str(uuid.uuid4())}
        return Response(
            body.encode(), status_code=status, headers=headers, media_type="application/json"
        )

    async def _v3(self, request: Request, operation: str) -> tuple[str, dict[str, Any]]:
        """Authenticate a merchant call and apply forced failures; returns (body, json)."""
        body = (await request.body()).decode()
        self._check_authorization(request, body)
        with self._lock:
            queue = self._forced_failures.get(operation)
            forced = queue.pop(0) if queue else None
            action = self._before_next.pop(operation, None)
        if action is not None:
            action()
        if forced is not None:
            raise _ApiError(*forced)
        if not body:
            return body, {}
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise _ApiError(400, "PARAM_ERROR", "请求体不是合法的 JSON") from exc
        if not isinstance(data, dict):
            raise _ApiError(400, "PARAM_ERROR", "请求体必须是 JSON 对象")
        return body, data

    def _check_authorization(self, request: Request, body: str) -> None:
        auth = signing.parse_authorization(request.headers.get("authorization", ""))
        if auth is None:
            raise _ApiError(401, "SIGN_ERROR", "Authorization 头缺失或格式错误")
        if auth.mchid != self.mchid or auth.serial_no != self.merchant_serial:
            raise _ApiError(401, "SIGN_ERROR", "商户号或证书序列号不匹配")
        if not signing.timestamp_is_fresh(auth.timestamp, clock.now().timestamp()):
            raise _ApiError(401, "SIGN_ERROR", "签名时间戳过期")
        path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string") or b""
        path_with_query = path.decode() + ("?" + query.decode() if query else "")
        message = signing.request_message(
            request.method, path_with_query, auth.timestamp, auth.nonce_str, body
        )
        if not signing.rsa_verify(self.merchant_public_key, message, auth.signature):
            raise _ApiError(401, "SIGN_ERROR", "签名错误")

    async def _run(self, request: Request, operation: str, handler: Any) -> Response:
        try:
            _, data = await self._v3(request, operation)
            with self._lock:
                status, payload = handler(request, data)
        except _ApiError as err:
            status, payload = err.status, {"code": err.code, "message": err.message}
        self.requests_seen.append((request.method, request.url.path, status))
        return self._signed(status, payload)

    # JSAPI 下单
    async def _h_prepay(self, request: Request) -> Response:
        return await self._run(request, "prepay", self._prepay)

    def _prepay(self, _: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            amount, payer = data["amount"], data["payer"]
            fields = {
                "appid": str(data["appid"]),
                "mchid": str(data["mchid"]),
                "description": str(data["description"]),
                "out_trade_no": str(data["out_trade_no"]),
                "notify_url": str(data["notify_url"]),
                "total": amount["total"],
                "currency": str(amount.get("currency", "CNY")),
                "openid": str(payer["openid"]),
            }
        except (KeyError, TypeError) as exc:
            raise _ApiError(400, "PARAM_ERROR", f"缺少参数 {exc}") from exc
        total = fields["total"]
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise _ApiError(400, "PARAM_ERROR", "amount.total 必须是正整数(分)")
        if fields["currency"] != "CNY":
            raise _ApiError(400, "PARAM_ERROR", "currency 仅支持 CNY")
        if fields["mchid"] != self.mchid:
            raise _ApiError(400, "PARAM_ERROR", "mchid 与请求的商户号不一致")
        if fields["appid"] != self.appid:
            raise _ApiError(400, "APPID_MCHID_NOT_MATCH", "appid 和 mch_id 不匹配")
        if not re.fullmatch(r"https?://\S+", str(fields["notify_url"])):
            raise _ApiError(400, "PARAM_ERROR", "notify_url 格式错误")
        expires_at = None
        if "time_expire" in data:
            try:
                expires_at = datetime.fromisoformat(str(data["time_expire"]))
            except ValueError:
                expires_at = None
            if expires_at is None or expires_at.tzinfo is None:
                raise _ApiError(400, "PARAM_ERROR", "time_expire 格式错误")
        otn = str(fields["out_trade_no"])
        existing = self.orders.get(otn)
        if existing is not None:
            if existing.state == "SUCCESS" or existing.state == "REFUND":
                raise _ApiError(400, "ORDERPAID", "该订单已支付")
            if existing.state == "CLOSED":
                raise _ApiError(400, "ORDER_CLOSED", "该订单已关闭")
            same = (
                existing.total == total
                and existing.openid == fields["openid"]
                and existing.description == fields["description"]
            )
            if not same:
                raise _ApiError(400, "INVALID_REQUEST", "商户订单号重复")
            return 200, {"prepay_id": existing.prepay_id}
        prepay_id = f"wx{clock.now().astimezone(CHINA):%d%H%M%S}{secrets.token_hex(12)}"
        self.orders[otn] = Order(
            appid=self.appid,
            mchid=self.mchid,
            out_trade_no=otn,
            description=str(fields["description"]),
            notify_url=str(fields["notify_url"]),
            total=total,
            currency="CNY",
            openid=str(fields["openid"]),
            prepay_id=prepay_id,
            attach=str(data["attach"]) if "attach" in data else None,
            expires_at=expires_at,
        )
        return 200, {"prepay_id": prepay_id}

    # 商户订单号查询订单
    async def _h_query_order(self, request: Request) -> Response:
        return await self._run(request, "query_order", self._query_order)

    def _query_order(self, request: Request, _: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if request.query_params.get("mchid") != self.mchid:
            raise _ApiError(400, "PARAM_ERROR", "mchid 缺失或不一致")
        order = self.orders.get(request.path_params["out_trade_no"])
        if order is None:
            raise _ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
        return 200, order.view()

    # 关闭订单
    async def _h_close_order(self, request: Request) -> Response:
        try:
            _, data = await self._v3(request, "close_order")
            with self._lock:
                order = self.orders.get(request.path_params["out_trade_no"])
                if data.get("mchid") != self.mchid:
                    raise _ApiError(400, "PARAM_ERROR", "mchid 缺失或不一致")
                if order is None:
                    raise _ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
                if order.state != "NOTPAY":
                    raise _ApiError(400, "ORDERPAID", "订单已支付,不能关闭")
                order.state = "CLOSED"
        except _ApiError as err:
            self.requests_seen.append((request.method, request.url.path, err.status))
            return self._signed(err.status, {"code": err.code, "message": err.message})
        self.requests_seen.append((request.method, request.url.path, 204))
        return self._signed(204, None)

    # 退款申请
    async def _h_refund(self, request: Request) -> Response:
        response = await self._run(request, "refund", self._refund)
        return response

    def _refund(self, _: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            out_refund_no = str(data["out_refund_no"])
            refund_fen, total_fen = data["amount"]["refund"], data["amount"]["total"]
            currency = str(data["amount"].get("currency", "CNY"))
        except (KeyError, TypeError) as exc:
            raise _ApiError(400, "PARAM_ERROR", f"缺少参数 {exc}") from exc
        if not all(isinstance(v, int) and v > 0 for v in (refund_fen, total_fen)):
            raise _ApiError(400, "PARAM_ERROR", "amount.refund / amount.total 必须是正整数(分)")
        if currency != "CNY":
            raise _ApiError(400, "PARAM_ERROR", "currency 仅支持 CNY")
        order: Order | None = None
        if "out_trade_no" in data:
            order = self.orders.get(str(data["out_trade_no"]))
        elif "transaction_id" in data:
            tid = str(data["transaction_id"])
            order = next((o for o in self.orders.values() if o.transaction_id == tid), None)
        else:
            raise _ApiError(400, "PARAM_ERROR", "需要 out_trade_no 或 transaction_id")
        if order is None:
            raise _ApiError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        existing = self.refunds.get(out_refund_no)
        if existing is not None:
            # Same out_refund_no = the same refund: answer with it, move no money again.
            if existing.out_trade_no != order.out_trade_no or existing.refund != refund_fen:
                raise _ApiError(400, "INVALID_REQUEST", "out_refund_no 已用于另一笔退款")
            return 200, existing.view()
        if order.transaction_id is None or order.state not in ("SUCCESS", "REFUND"):
            raise _ApiError(400, "INVALID_REQUEST", "订单未支付")
        if total_fen != order.total:
            raise _ApiError(400, "PARAM_ERROR", "amount.total 与订单金额不一致")
        if refund_fen > order.total - order.refunded:
            raise _ApiError(400, "PARAM_ERROR", "退款金额超过订单可退金额")
        refund = Refund(
            out_refund_no=out_refund_no,
            refund_id=f"50000{next(self._seq):06d}{secrets.randbelow(10**18):018d}",
            out_trade_no=order.out_trade_no,
            transaction_id=order.transaction_id,
            refund=refund_fen,
            total=order.total,
            notify_url=str(data["notify_url"]) if data.get("notify_url") else None,
            create_time=rfc3339(clock.now()),
        )
        self.refunds[out_refund_no] = refund
        order.refunded += refund_fen
        order.state = "REFUND"
        view = refund.view()
        if self.auto_complete_refunds:
            worker = threading.Thread(
                target=self.complete_refund, args=(out_refund_no,), daemon=True
            )
            self._track(worker)
        return 200, view

    # 查询单笔退款
    async def _h_query_refund(self, request: Request) -> Response:
        return await self._run(request, "query_refund", self._query_refund)

    def _query_refund(self, request: Request, _: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        refund = self.refunds.get(request.path_params["out_refund_no"])
        if refund is None:
            raise _ApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, refund.view()

    # auth.code2Session: always HTTP 200, errors as errcode/errmsg.
    # 请求分账
    async def _h_profit_sharing(self, request: Request) -> Response:
        return await self._run(request, "profit_sharing", self._profit_sharing)

    def _profit_sharing(self, _: Request, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            transaction_id = str(data["transaction_id"])
            out_order_no = str(data["out_order_no"])
            receivers = data["receivers"]
            unfreeze = data["unfreeze_unsplit"]
        except (KeyError, TypeError) as exc:
            raise _ApiError(400, "PARAM_ERROR", f"缺少参数 {exc}") from exc
        if not _OUT_ORDER_NO.fullmatch(out_order_no):
            raise _ApiError(400, "PARAM_ERROR", "out_order_no 只能是数字、大小写字母_-|*@")
        if not isinstance(unfreeze, bool):
            raise _ApiError(400, "PARAM_ERROR", "unfreeze_unsplit 必须是布尔值")
        if not isinstance(receivers, list) or not 1 <= len(receivers) <= 50:
            raise _ApiError(400, "PARAM_ERROR", "receivers 必须有 1 到 50 个接收方")
        clean = [self._receiver(r, data) for r in receivers]
        existing = self.profit_sharing_orders.get(out_order_no)
        if existing is not None:
            # 同一分账单号多次请求等同一次: answer the same order, split nothing again.
            if existing.transaction_id != transaction_id or existing.receivers != clean:
                raise _ApiError(400, "INVALID_REQUEST", "商户分账单号已用于另一笔分账")
            return 200, existing.view()
        amount = sum(int(r["amount"]) for r in clean)
        if transaction_id != STANDIN_SETTLEMENT_TRANSACTION_ID:
            order = next(
                (o for o in self.orders.values() if o.transaction_id == transaction_id), None
            )
            if order is None or order.state not in ("SUCCESS", "REFUND"):
                raise _ApiError(404, "RESOURCE_NOT_EXISTS", "微信订单不存在")
            split = sum(
                o.amount
                for o in self.profit_sharing_orders.values()
                if o.transaction_id == transaction_id
            )
            if amount > order.total - order.refunded - split:
                raise _ApiError(403, "NOT_ENOUGH", "分账金额不足")
        created = ProfitSharingOrder(
            transaction_id=transaction_id,
            out_order_no=out_order_no,
            order_id=f"30000{next(self._seq):06d}{secrets.randbelow(10**18):018d}",
            receivers=clean,
            create_time=rfc3339(clock.now()),
        )
        self.profit_sharing_orders[out_order_no] = created
        if self.lose_profit_sharing_answers > 0:
            self.lose_profit_sharing_answers -= 1
            raise _ApiError(500, "SYSTEM_ERROR", "系统错误")
        return 200, created.view()

    @staticmethod
    def _receiver(raw: object, data: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise _ApiError(400, "PARAM_ERROR", "receivers 的每一项必须是对象")
        try:
            kind, account = str(raw["type"]), str(raw["account"])
            amount, description = raw["amount"], str(raw["description"])
        except KeyError as exc:
            raise _ApiError(400, "PARAM_ERROR", f"缺少参数 receivers.{exc}") from exc
        if kind not in _RECEIVER_TYPES:
            raise _ApiError(400, "PARAM_ERROR", "receivers.type 不支持")
        if kind == "PERSONAL_OPENID" and not data.get("appid"):
            raise _ApiError(400, "PARAM_ERROR", "接收方为 PERSONAL_OPENID 时 appid 必填")
        if not account or len(account) > 64:
            raise _ApiError(400, "PARAM_ERROR", "receivers.account 长度错误")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise _ApiError(400, "PARAM_ERROR", "receivers.amount 必须是正整数(分)")
        if not description or len(description) > 80:
            raise _ApiError(400, "PARAM_ERROR", "receivers.description 长度必须为 1 到 80")
        return {"type": kind, "account": account, "amount": amount, "description": description}

    # 查询分账结果
    async def _h_query_profit_sharing(self, request: Request) -> Response:
        return await self._run(request, "query_profit_sharing", self._query_profit_sharing)

    def _query_profit_sharing(
        self, request: Request, _: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        transaction_id = request.query_params.get("transaction_id")
        if not transaction_id:
            raise _ApiError(400, "PARAM_ERROR", "transaction_id 必填")
        found = self.profit_sharing_orders.get(request.path_params["out_order_no"])
        if found is None or found.transaction_id != transaction_id:
            raise _ApiError(404, "RESOURCE_NOT_EXISTS", "分账单不存在")
        return 200, found.view()

    async def _h_code2session(self, request: Request) -> Response:
        return JSONResponse(self._code2session(dict(request.query_params)))

    def _code2session(self, q: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            if self._forced_errcodes:
                errcode = self._forced_errcodes.pop(0)
                return {"errcode": errcode, "errmsg": _ERRMSG.get(errcode, "error")}
            if q.get("appid") != self.appid:
                return {"errcode": 40013, "errmsg": "invalid appid"}
            if q.get("secret") != self.secret:
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            if q.get("grant_type") != "authorization_code":
                return {"errcode": 40002, "errmsg": "invalid grant_type"}
            code = q.get("js_code", "")
            if code in self._used_codes:
                return {"errcode": 40163, "errmsg": "code been used"}
            openid = self._issued_codes.pop(code, None)
            if openid is None:
                m = LOGIN_CODE_PATTERN.fullmatch(code)
                if m is None:
                    return {"errcode": 40029, "errmsg": "invalid code"}
                openid = openid_for(self.appid, m.group("user"))
            self._used_codes.add(code)
            session_key = base64.b64encode(secrets.token_bytes(16)).decode()
            self.sessions[openid] = session_key
        return {"openid": openid, "session_key": session_key}

    # getStableAccessToken: POST JSON, errors as errcode/errmsg (HTTP 200).
    async def _h_stable_token(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError:
            data = None
        with self._lock:
            answer = self._stable_token(data)
            force = isinstance(data, dict) and data.get("force_refresh") is True
            self.token_requests.append((force, int(answer.get("errcode", 0))))
        return JSONResponse(answer)

    def _stable_token(self, data: object) -> dict[str, Any]:
        if self._forced_token:
            errcode = self._forced_token.pop(0)
            return {"errcode": errcode, "errmsg": _ERRMSG.get(errcode, "error")}
        if not isinstance(data, dict):
            return {"errcode": 47001, "errmsg": "data format error"}
        if data.get("grant_type") != "client_credential":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        if data.get("appid") != self.appid:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if data.get("secret") != self.secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        force = data.get("force_refresh", False)
        if not isinstance(force, bool):
            return {"errcode": 47001, "errmsg": "data format error: force_refresh"}
        now = clock.now()
        current = self._current_token
        if force:
            # 强制刷新模式: the previous token stops working at once.
            for token in self._access_tokens.values():
                token.revoked = True
        elif current is not None and not current.revoked:
            left = (current.expires_at - now).total_seconds()
            if left > ACCESS_TOKEN_RENEW_S:
                return {"access_token": current.value, "expires_in": int(left)}
        token = _AccessToken(
            value=secrets.token_urlsafe(96),
            expires_at=now + timedelta(seconds=ACCESS_TOKEN_TTL_S),
        )
        self._access_tokens[token.value] = token
        self._current_token = token
        return {"access_token": token.value, "expires_in": ACCESS_TOKEN_TTL_S}

    # subscribeMessage.send: POST JSON with ?access_token=, errors as errcode/errmsg.
    async def _h_subscribe_send(self, request: Request) -> Response:
        if self.subscribe_latency_s:
            await asyncio.sleep(self.subscribe_latency_s)
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError:
            data = None
        with self._lock:
            answer = self._subscribe_send(request.query_params.get("access_token", ""), data)
            touser = data.get("touser") if isinstance(data, dict) else None
            self.subscribe_attempts.append((str(touser), int(answer["errcode"])))
        return JSONResponse(answer)

    def _subscribe_send(self, access_token: str, data: object) -> dict[str, Any]:
        def error(errcode: int, errmsg: str | None = None) -> dict[str, Any]:
            rid = f"{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"
            text = errmsg or _ERRMSG.get(errcode, "error")
            return {"errcode": errcode, "errmsg": f"{text} rid: {rid}"}

        if self._forced_subscribe:
            return error(self._forced_subscribe.pop(0))
        if not access_token:
            return error(41001)
        token = self._access_tokens.get(access_token)
        if token is None or token.revoked:
            return error(40001)
        if clock.now() >= token.expires_at:
            return error(42001)
        if not isinstance(data, dict):
            return error(47001)
        touser = data.get("touser")
        if not isinstance(touser, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", touser):
            return error(40003)
        template_id = data.get("template_id")
        keys = self.subscribe_templates.get(template_id) if isinstance(template_id, str) else None
        if keys is None:
            return error(40037)
        assert isinstance(template_id, str)
        state = data.get("miniprogram_state", "formal")
        if state not in ("developer", "trial", "formal"):
            return error(47003, "argument invalid! miniprogram_state")
        lang = data.get("lang", "zh_CN")
        if lang not in ("zh_CN", "en_US", "zh_HK", "zh_TW"):
            return error(47003, "argument invalid! lang")
        page = data.get("page")
        if page is not None and not isinstance(page, str):
            return error(41030)
        if (touser, None) in self._refusals or (touser, template_id) in self._refusals:
            return error(43101)
        fields = data.get("data")
        if not isinstance(fields, dict):
            return error(47003, "argument invalid! data is empty")
        values: dict[str, str] = {}
        for key in keys:
            item = fields.get(key)
            value = item.get("value") if isinstance(item, dict) else None
            if value is None or str(value) == "":
                return error(47003, f"argument invalid! data.{key}.value is empty")
            problem = subscribe_value_problem(key, str(value))
            if problem is not None:
                return error(47003, f"argument invalid! data.{key}.value {problem}")
            values[key] = str(value)
        sent = SubscribeMessageSent(
            msgid=next(self._seq) * 1_000_003 + secrets.randbelow(1_000_000),
            touser=touser,
            template_id=template_id,
            data=values,
            page=page,
            miniprogram_state=str(state),
            lang=str(lang),
            sent_at=clock.now(),
        )
        self.subscribe_messages.append(sent)
        return {"errcode": 0, "errmsg": "ok", "msgid": sent.msgid}

    # -- admin (the rider's side of WeChat, for the simulator and the demo) ---------------

    async def _h_admin_subscribe_messages(self, request: Request) -> Response:
        openid = request.query_params.get("openid")
        return JSONResponse([m.view() for m in self.sent_messages(openid)])

    async def _h_admin_subscribe_failures(self, request: Request) -> Response:
        data = await request.json()
        errcodes = data.get("errcodes") if isinstance(data, dict) else None
        if not isinstance(errcodes, list) or not all(isinstance(c, int) for c in errcodes):
            return JSONResponse({"errcode": 47001, "errmsg": "errcodes: list of ints"}, 400)
        self.fail_next_subscribe(*errcodes)
        return JSONResponse({"queued": len(errcodes)})

    async def _h_admin_subscribe_refusals(self, request: Request) -> Response:
        data = await request.json()
        openid = data.get("openid") if isinstance(data, dict) else None
        if not isinstance(openid, str) or not openid:
            return JSONResponse({"errcode": 47001, "errmsg": "openid required"}, 400)
        template_id = data.get("template_id")
        self.refuse_subscribe(openid, template_id if isinstance(template_id, str) else None)
        return JSONResponse({"refused": openid})

    async def _h_admin_pay(self, request: Request) -> Response:
        data = await request.json()
        ref = str(data.get("prepay_id") or data.get("out_trade_no") or "")
        try:
            order = self.pay(ref)
        except StandInError as exc:
            return JSONResponse({"code": "INVALID_REQUEST", "message": str(exc)}, 400)
        return JSONResponse(order.view())

    async def _h_admin_complete_refund(self, request: Request) -> Response:
        try:
            refund = self.complete_refund(request.path_params["out_refund_no"])
        except StandInError as exc:
            return JSONResponse({"code": "RESOURCE_NOT_EXISTS", "message": str(exc)}, 404)
        return JSONResponse(refund.view())

    async def _h_admin_login_code(self, request: Request) -> Response:
        body = await request.body()
        data = json.loads(body) if body else {}
        return JSONResponse({"code": self.issue_login_code(data.get("openid"))})

    async def _h_admin_notifications(self, _: Request) -> Response:
        with self._lock:
            items = [
                {
                    "url": n.url,
                    "event_type": n.event_type,
                    "body": n.body,
                    "headers": n.headers,
                    "attempts": n.attempts,
                    "acknowledged": n.acknowledged.is_set(),
                }
                for n in self.notifications
            ]
        return JSONResponse(items)

    async def _h_admin_platform_key(self, _: Request) -> Response:
        return JSONResponse(
            {
                "serial_no": self.platform_serial,
                "public_key": signing.public_key_pem(self.platform_public_key),
            }
        )


_ERRMSG = {
    -1: "system error",
    40029: "invalid code",
    40163: "code been used",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    40226: "invalid user",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40037: "invalid template_id",
    41001: "access_token missing",
    41030: "invalid page",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    47001: "data format error",
    47003: "argument invalid!",
}

# 订阅消息参数值内容限制: what each key type (the key without its number) accepts.
_CLOCK = r"\d{1,2}:\d{2}(:\d{2})?"
_DAY = r"(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{4}年\d{1,2}月\d{1,2}日|\d{1,2}月\d{1,2}日)"
_TIME_POINT = rf"({_DAY} ?)?{_CLOCK}"
_DATE_POINT = rf"{_DAY}( {_CLOCK})?"
_VALUE_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "thing": (re.compile(r"[^\x00-\x1f\x7f]{1,20}"), "must be 20 characters at most"),
    "number": (re.compile(r"\d{1,32}(\.\d+)?"), "must be a number of 32 digits at most"),
    "letter": (re.compile(r"[A-Za-z]{1,32}"), "must be 32 letters at most"),
    "symbol": (re.compile(r"[^\w\s]{1,5}"), "must be 5 symbols at most"),
    "character_string": (
        re.compile(r"[\x21-\x7e]{1,32}"),
        "must be 32 digits, letters or symbols at most",
    ),
    "time": (re.compile(rf"{_TIME_POINT}(~{_TIME_POINT})?"), "is not a 24-hour time"),
    "date": (re.compile(rf"{_DATE_POINT}(~{_DATE_POINT})?"), "is not a date"),
    "amount": (
        re.compile(r"[¥￥$]?\d{1,10}(\.\d{1,2})?元?"),
        "must be a currency sign and 10 digits at most, optionally ending in 元",
    ),
    "phone_number": (re.compile(r"[\d+\-() ]{1,17}"), "is not a phone number"),
    "car_number": (re.compile(r".{1,8}"), "must be 8 characters at most"),
    "name": (
        re.compile(r"[\u4e00-\u9fff]{1,10}|[A-Za-z .·-]{1,20}"),
        "must be 10 Chinese characters or 20 letters at most",
    ),
    "phrase": (re.compile(r"[\u4e00-\u9fff]{1,5}"), "must be 5 Chinese characters at most"),
}


def subscribe_value_problem(key: str, value: str) -> str | None:
    """What WeChat would say about `value` for template key `key` ("thing1", "amount2"...),
    or None when it is acceptable."""
    kind = re.sub(r"\d+$", "", key)
    rule = _VALUE_RULES.get(kind)
    if rule is None:
        return None if len(value) <= 20 else "must be 20 characters at most"
    pattern, problem = rule
    return None if pattern.fullmatch(value) else problem


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m server.wechat.standin`: serve until Ctrl-C, writing keys for the server."""
    parser = argparse.ArgumentParser(description="Local WeChat / WeChat Pay v3 stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8060)
    parser.add_argument("--credentials-out", type=Path, default=Path("var/wechat"))
    args = parser.parse_args(argv)
    WeChatStandIn(args.host, args.port).serve(
        args.credentials_out,
        announce=lambda url: print(
            f"WeChat stand-in on {url}; keys in {args.credentials_out}", flush=True
        ),
    )


if __name__ == "__main__":
    main()
