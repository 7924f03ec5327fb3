"""Mini-program server API: `code2session` (auth.code2Session), the stable access token
(getStableAccessToken) and subscribe messages (subscribeMessage.send).

WeChat answers HTTP 200 even for errors and puts an `errcode` in the JSON; each errcode the
docs list becomes its own exception so the login endpoint can say what went wrong. They are
`DomainError`s, so the HTTP edge maps them without a translation table. `permanent` says
whether sending the same message again can ever succeed (the notification sender gives up
on those and retries the others).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx

from server.core.clock import clock
from server.core.errors import DomainError

REAL_API_BASE_URL = "https://api.weixin.qq.com"

#: getStableAccessToken: in normal mode WeChat hands out a new token only in the last five
#: minutes of the current one, so the cache must refresh within that window (a margin of five
#: minutes or more would get the same token back and refresh in a loop).
TOKEN_REFRESH_MARGIN = timedelta(seconds=120)


class WeChatError(DomainError):
    status_code = 502
    code = "wechat_error"
    #: True when the same request can never succeed (the notification sender gives up).
    permanent: ClassVar[bool] = False

    def __init__(self, message: str, errcode: int | None = None) -> None:
        super().__init__(message, errcode=errcode)
        self.errcode = errcode


class InvalidCode(WeChatError):
    """40029: the code is wrong or expired (a `wx.login` code lives five minutes)."""

    status_code = 400
    code = "invalid_login_code"


class CodeAlreadyUsed(InvalidCode):
    """40163: each `wx.login` code can be exchanged once."""

    code = "login_code_used"


class RateLimited(WeChatError):
    """45011: WeChat's API frequency limit (100 calls a minute per user)."""

    status_code = 429
    code = "wechat_rate_limited"


class QuotaExceeded(RateLimited):
    """45009: the API's daily quota is used up (reach max api daily quota limit): later."""

    code = "wechat_quota_exceeded"


class WeChatBusy(WeChatError):
    """-1: 系统繁忙, try again later; also raised when WeChat cannot be reached."""

    status_code = 503
    code = "wechat_busy"


class UserBlocked(WeChatError):
    """40226: 高风险等级用户, login blocked by WeChat's risk control."""

    status_code = 403
    code = "wechat_user_blocked"


class WeChatMisconfigured(WeChatError):
    """40013 / 40125 / 40164: the server's appid, secret or IP whitelist is wrong; nothing
    the rider can fix, and retried (fixing the settings delivers what waited)."""

    status_code = 500
    code = "wechat_misconfigured"


class AccessTokenInvalid(WeChatError):
    """40001 (invalid or not the latest), 42001 (expired), 40014, 41001: the client fetches
    a fresh token and retries once; raised only if the fresh one is refused too."""

    status_code = 503
    code = "wechat_access_token_invalid"


class SubscribeRefused(WeChatError):
    """43101: the rider did not subscribe to this template, used up the one-time grant, or
    turned the messages off (用户拒绝接受消息). Sending again cannot help."""

    code = "wechat_subscribe_refused"
    permanent = True


class TemplateDataInvalid(WeChatError):
    """47003: a data value breaks the template's rules (empty, thing over 20 characters,
    bad amount or time format); errmsg names the field."""

    code = "wechat_template_data_invalid"
    permanent = True


class InvalidTemplate(WeChatError):
    """40037: the template id is empty, wrong, or not this appid's."""

    code = "wechat_invalid_template"
    permanent = True


class InvalidOpenid(WeChatError):
    """40003: touser is empty or not an openid of this appid."""

    code = "wechat_invalid_openid"
    permanent = True


class InvalidPage(WeChatError):
    """41030: `page` does not exist in the released mini-program."""

    code = "wechat_invalid_page"
    permanent = True


_ERRCODES: dict[int, type[WeChatError]] = {
    40029: InvalidCode,
    40163: CodeAlreadyUsed,
    45011: RateLimited,
    45009: QuotaExceeded,
    -1: WeChatBusy,
    40226: UserBlocked,
    40013: WeChatMisconfigured,
    40125: WeChatMisconfigured,
    40164: WeChatMisconfigured,
    40001: AccessTokenInvalid,
    40014: AccessTokenInvalid,
    41001: AccessTokenInvalid,
    42001: AccessTokenInvalid,
    43101: SubscribeRefused,
    47003: TemplateDataInvalid,
    40037: InvalidTemplate,
    40003: InvalidOpenid,
    41030: InvalidPage,
}


def error_for(errcode: int, errmsg: str, api: str = "code2session") -> WeChatError:
    cls = _ERRCODES.get(errcode, WeChatError)
    return cls(f"{api} failed: {errcode} {errmsg}", errcode)


@dataclass(frozen=True)
class Session:
    openid: str
    session_key: str  # never leaves the server (SPEC §2, Login)
    unionid: str | None = None


@dataclass(frozen=True)
class SubscribeMessage:
    """One subscribeMessage.send request: `data` maps template keys ("thing1", "amount2",
    "time3"...) to their values; the client wraps each as `{"value": ...}`."""

    touser: str
    template_id: str
    data: Mapping[str, str]
    page: str | None = None
    #: developer | trial | formal: which version of the mini-program the card opens.
    miniprogram_state: str = "formal"
    lang: str = "zh_CN"

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "touser": self.touser,
            "template_id": self.template_id,
            "data": {key: {"value": value} for key, value in self.data.items()},
            "miniprogram_state": self.miniprogram_state,
            "lang": self.lang,
        }
        if self.page:
            out["page"] = self.page
        return out


@dataclass(frozen=True)
class _CachedToken:
    value: str
    expires_at: datetime


class MiniProgramClient:
    """Thread-safe: the API and the scheduler share one instance per process; the access
    token is cached and fetched by one thread at a time."""

    def __init__(
        self,
        appid: str,
        secret: str,
        base_url: str = REAL_API_BASE_URL,
        http: httpx.Client | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.appid = appid
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.Client(timeout=timeout_s)
        self._owns_http = http is None
        self._token: _CachedToken | None = None
        self._token_lock = threading.Lock()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> MiniProgramClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        api: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One call; raises the errcode's exception. Transport errors and 5xx are `WeChatBusy`
        (for a send, WeChat may or may not have delivered: see notifications/jobs.py)."""
        try:
            response = self._http.request(
                method, f"{self.base_url}{path}", params=params, json=json
            )
        except httpx.TransportError as exc:
            raise WeChatBusy(f"WeChat unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise WeChatBusy(f"WeChat answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise WeChatError(f"{api} answered non-JSON (HTTP {response.status_code})") from exc
        if not isinstance(data, dict):
            raise WeChatError(f"{api} answered a JSON {type(data).__name__}, not an object")
        errcode = int(data.get("errcode", 0) or 0)
        if errcode != 0:
            raise error_for(errcode, str(data.get("errmsg", "")), api)
        return data

    def code2session(self, js_code: str) -> Session:
        params = {
            "appid": self.appid,
            "secret": self._secret,
            "js_code": js_code,
            "grant_type": "authorization_code",
        }
        data = self._call("code2session", "GET", "/sns/jscode2session", params=params)
        if not data.get("openid") or not data.get("session_key"):
            raise WeChatError("code2session answered without openid/session_key")
        unionid = data.get("unionid")
        return Session(
            openid=str(data["openid"]),
            session_key=str(data["session_key"]),
            unionid=str(unionid) if unionid else None,
        )

    # -- access token (getStableAccessToken) ---------------------------------------------

    def access_token(self, *, force_refresh: bool = False) -> str:
        """The cached stable access token, fetched when missing or about to expire.

        The stable token (not the older `/cgi-bin/token`) because every process of ours asks
        for it: in normal mode WeChat returns the same token to all of them, where the old API
        invalidated the previous token on each call. `force_refresh` invalidates the token
        everywhere (WeChat allows it 20 times a day) and is for a leaked token only."""
        with self._token_lock:
            cached = self._token
            if (
                not force_refresh
                and cached is not None
                and clock.now() < cached.expires_at - TOKEN_REFRESH_MARGIN
            ):
                return cached.value
            return self._fetch_token(force_refresh)

    def _fetch_token(self, force_refresh: bool) -> str:
        body: dict[str, Any] = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self._secret,
        }
        if force_refresh:
            body["force_refresh"] = True
        data = self._call("stable_token", "POST", "/cgi-bin/stable_token", json=body)
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not token or not isinstance(expires_in, int) or expires_in <= 0:
            raise WeChatError("stable_token answered without access_token/expires_in")
        self._token = _CachedToken(str(token), clock.now() + timedelta(seconds=expires_in))
        return str(token)

    def _forget_token(self, token: str) -> None:
        """Drop `token` from the cache unless another thread already replaced it."""
        with self._token_lock:
            if self._token is not None and self._token.value == token:
                self._token = None

    # -- subscribe messages (subscribeMessage.send) ---------------------------------------

    def send_subscribe_message(self, message: SubscribeMessage) -> int | None:
        """Send one subscribe message; returns WeChat's msgid.

        A token WeChat calls invalid or expired (40001/42001: refreshed elsewhere, or expired
        early) is dropped, a fresh one fetched, and the message sent once more; a second
        refusal is raised as `AccessTokenInvalid` (retryable). Other errcodes are raised as
        their `WeChatError` (see `permanent`)."""
        body = message.body()
        token = self.access_token()
        try:
            data = self._send(token, body)
        except AccessTokenInvalid:
            self._forget_token(token)
            data = self._send(self.access_token(), body)
        try:
            return int(data["msgid"])
        except (KeyError, TypeError, ValueError):
            return None

    def _send(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(
            "subscribeMessage.send",
            "POST",
            "/cgi-bin/message/subscribe/send",
            params={"access_token": token},
            json=body,
        )
