"""code2session through real HTTP against the WeChat stand-in, each WeChat errcode mapped."""

from __future__ import annotations

import httpx
import pytest

from server.core.errors import DomainError
from server.payments import signing
from server.wechat.miniprogram import (
    CodeAlreadyUsed,
    InvalidCode,
    MiniProgramClient,
    RateLimited,
    UserBlocked,
    WeChatBusy,
    WeChatError,
    WeChatMisconfigured,
)
from server.wechat.standin import WeChatStandIn, make_login_code, openid_for

KEY = signing.generate_private_key()


@pytest.fixture
def client(mini_program: MiniProgramClient) -> MiniProgramClient:
    return mini_program


def test_an_issued_code_exchanges_for_the_riders_openid_and_a_session_key(
    standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    session = client.code2session(standin.issue_login_code("oRider1"))
    assert session.openid == "oRider1"
    assert session.session_key == standin.sessions["oRider1"]
    assert session.unionid is None


def test_simulator_codes_give_the_same_openid_for_the_same_rider(
    standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    first = client.code2session(make_login_code("rider-7"))
    second = client.code2session(make_login_code("rider-7"))
    other = client.code2session(make_login_code("rider-8"))
    assert first.openid == second.openid == openid_for(standin.appid, "rider-7")
    assert len(first.openid) == 28
    assert other.openid != first.openid


def test_an_unknown_code_is_an_invalid_code(client: MiniProgramClient) -> None:
    with pytest.raises(InvalidCode) as err:
        client.code2session("not-a-code")
    assert err.value.errcode == 40029
    assert err.value.status_code == 400


def test_a_code_can_be_exchanged_once(standin: WeChatStandIn, client: MiniProgramClient) -> None:
    code = standin.issue_login_code()
    client.code2session(code)
    with pytest.raises(CodeAlreadyUsed) as err:
        client.code2session(code)
    assert err.value.errcode == 40163
    assert isinstance(err.value, InvalidCode)


@pytest.mark.parametrize(
    ("errcode", "error", "status"),
    [
        (45011, RateLimited, 429),
        (-1, WeChatBusy, 503),
        (40226, UserBlocked, 403),
        (40029, InvalidCode, 400),
        (40163, CodeAlreadyUsed, 400),
        (61024, WeChatError, 502),
    ],
)
def test_each_wechat_errcode_becomes_its_own_error(
    standin: WeChatStandIn,
    client: MiniProgramClient,
    errcode: int,
    error: type[WeChatError],
    status: int,
) -> None:
    standin.fail_next_code2session(errcode)
    with pytest.raises(error) as err:
        client.code2session(standin.issue_login_code())
    assert type(err.value) is error
    assert err.value.errcode == errcode
    assert isinstance(err.value, DomainError)
    assert err.value.status_code == status


def test_a_login_after_a_rate_limit_succeeds(
    standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    standin.fail_next_code2session(45011)
    code = standin.issue_login_code("oAfter")
    with pytest.raises(RateLimited):
        client.code2session(code)
    assert client.code2session(code).openid == "oAfter"


def test_a_wrong_app_secret_is_a_server_misconfiguration(standin: WeChatStandIn) -> None:
    with (
        MiniProgramClient(standin.appid, "wrong", base_url=standin.url) as c,
        pytest.raises(WeChatMisconfigured) as err,
    ):
        c.code2session(standin.issue_login_code())
    assert err.value.errcode == 40125
    with (
        MiniProgramClient("wx0000", standin.secret, base_url=standin.url) as c,
        pytest.raises(WeChatMisconfigured),
    ):
        c.code2session(standin.issue_login_code())


def test_an_unreachable_wechat_is_busy() -> None:
    with (
        MiniProgramClient("wx", "s", base_url="http://127.0.0.1:9", timeout_s=1) as c,
        pytest.raises(WeChatBusy),
    ):
        c.code2session("x")


def test_codes_can_be_issued_over_the_stand_ins_http_admin_endpoint(
    standin: WeChatStandIn, client: MiniProgramClient
) -> None:
    response = httpx.post(f"{standin.url}/_standin/login-codes", json={"openid": "oHttp"})
    assert client.code2session(response.json()["code"]).openid == "oHttp"
