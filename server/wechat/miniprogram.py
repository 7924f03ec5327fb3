"""Mini-program server API: `code2session` (auth.code2Session).

WeChat answers HTTP 200 even for errors and puts an `errcode` in the JSON; each errcode the
docs list becomes its own exception so the login endpoint can say what went wrong. They are
`DomainError`s, so the HTTP edge maps them without a translation table.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from server.core.errors import DomainError

REAL_API_BASE_URL = "https://api.weixin.qq.com"


class WeChatError(DomainError):
    status_code = 502
    code = "wechat_error"

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


class WeChatBusy(WeChatError):
    """-1: 系统繁忙, try again later; also raised when WeChat cannot be reached."""

    status_code = 503
    code = "wechat_busy"


class UserBlocked(WeChatError):
    """40226: 高风险等级用户, login blocked by WeChat's risk control."""

    status_code = 403
    code = "wechat_user_blocked"


class WeChatMisconfigured(WeChatError):
    """40013 / 40125: the server's appid or secret is wrong; nothing the rider can fix."""

    status_code = 500
    code = "wechat_misconfigured"


_ERRCODES: dict[int, type[WeChatError]] = {
    40029: InvalidCode,
    40163: CodeAlreadyUsed,
    45011: RateLimited,
    -1: WeChatBusy,
    40226: UserBlocked,
    40013: WeChatMisconfigured,
    40125: WeChatMisconfigured,
}


def error_for(errcode: int, errmsg: str) -> WeChatError:
    cls = _ERRCODES.get(errcode, WeChatError)
    return cls(f"code2session failed: {errcode} {errmsg}", errcode)


@dataclass(frozen=True)
class Session:
    openid: str
    session_key: str  # never leaves the server (SPEC §2, Login)
    unionid: str | None = None


class MiniProgramClient:
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

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> MiniProgramClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def code2session(self, js_code: str) -> Session:
        params = {
            "appid": self.appid,
            "secret": self._secret,
            "js_code": js_code,
            "grant_type": "authorization_code",
        }
        try:
            response = self._http.get(f"{self.base_url}/sns/jscode2session", params=params)
        except httpx.TransportError as exc:
            raise WeChatBusy(f"WeChat unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise WeChatBusy(f"WeChat answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise WeChatError(
                f"code2session answered non-JSON (HTTP {response.status_code})"
            ) from exc
        errcode = int(data.get("errcode", 0) or 0)
        if errcode != 0:
            raise error_for(errcode, str(data.get("errmsg", "")))
        if not data.get("openid") or not data.get("session_key"):
            raise WeChatError("code2session answered without openid/session_key")
        unionid = data.get("unionid")
        return Session(
            openid=str(data["openid"]),
            session_key=str(data["session_key"]),
            unionid=str(unionid) if unionid else None,
        )
