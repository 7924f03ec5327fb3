"""Cross-check with an independent implementation: the `wechatpayv3` SDK (the most used
Python WeChat Pay v3 client) signs requests the stand-in accepts, verifies the stand-in's
signed answers, and decrypts its notifications. Skipped when the SDK is not installed: it
is a reference for these tests only, not a dependency of the server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import wechatpayv3.core as wechatpayv3_core  # a test dependency (pyproject: test extras)

from server.payments import signing
from server.wechat.standin import WeChatStandIn

KEY = signing.generate_private_key()


@pytest.fixture
def standin() -> Iterator[WeChatStandIn]:
    with WeChatStandIn(
        merchant_private_key=KEY, platform_private_key=KEY, retry_schedule_s=(0.01,)
    ) as s:
        yield s


@pytest.fixture
def sdk(standin: WeChatStandIn) -> Any:
    core = wechatpayv3_core.Core(
        mchid=standin.mchid,
        cert_serial_no=standin.merchant_serial,
        private_key=signing.private_key_pem(KEY),
        apiv3_key=standin.apiv3_key.decode(),
        public_key=signing.public_key_pem(standin.platform_public_key),
        public_key_id=standin.platform_serial,
    )
    core._gate_way = standin.url  # the SDK has no setting for its base URL
    return core


def test_the_sdk_signs_a_prepay_the_stand_in_accepts_and_verifies_the_signed_answer(
    standin: WeChatStandIn, sdk: Any
) -> None:
    otn = uuid.uuid4().hex
    payload = {
        "appid": standin.appid,
        "mchid": standin.mchid,
        "description": "deposit",
        "out_trade_no": otn,
        "notify_url": "https://example.com/notify",
        "amount": {"total": 3000, "currency": "CNY"},
        "payer": {"openid": "oSdk"},
    }
    # Core.request raises if the answer's Wechatpay-Signature does not verify.
    status, text = sdk.request(
        "/v3/pay/transactions/jsapi", wechatpayv3_core.RequestType.POST, payload
    )
    assert status == 200
    assert json.loads(text)["prepay_id"] == standin.orders[otn].prepay_id
    status, text = sdk.request(f"/v3/pay/transactions/out-trade-no/{otn}?mchid={standin.mchid}")
    assert status == 200
    assert json.loads(text)["trade_state"] == "NOTPAY"


def test_the_sdk_decrypts_the_stand_ins_payment_notification(
    standin: WeChatStandIn, sdk: Any
) -> None:
    status, _ = sdk.request(
        "/v3/pay/transactions/jsapi",
        wechatpayv3_core.RequestType.POST,
        {
            "appid": standin.appid,
            "mchid": standin.mchid,
            "description": "deposit",
            "out_trade_no": "T-sdk",
            "notify_url": "http://127.0.0.1:9/notify",
            "amount": {"total": 3000, "currency": "CNY"},
            "payer": {"openid": "oSdk"},
        },
    )
    assert status == 200
    standin.pay("T-sdk")
    sent = standin.notifications[-1]
    assert sent.finished.wait(5)
    decoded = sdk.callback(sent.headers, sent.body)
    assert decoded["event_type"] == "TRANSACTION.SUCCESS"
    assert decoded["resource"]["out_trade_no"] == "T-sdk"
    assert decoded["resource"]["trade_state"] == "SUCCESS"
