"""WeChat Pay v3 through real HTTP: the client against the local WeChat stand-in, and the
stand-in's notifications against a small HTTP receiver. Nothing is monkeypatched."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from server.core.clock import clock
from server.payments import signing
from server.payments.wechatpay import (
    BadSignature,
    MalformedMessage,
    OrderNotFound,
    StaleTimestamp,
    UndecryptableResource,
    UnknownSerial,
    WeChatPayApiError,
    WeChatPayClient,
    WeChatPayUnavailable,
)
from server.wechat.standin import SentNotification, StandInError, WeChatStandIn

DEPOSIT_FEN = 3000
FAST_RETRIES = (0.01, 0.01, 0.02)
KEY_OTHER = signing.generate_private_key()
MERCHANT_KEY = signing.generate_private_key()
PLATFORM_KEY = signing.generate_private_key()


class Receiver:
    """A merchant notify endpoint: answers with whatever `respond(headers, body)` returns."""

    def __init__(self, respond: Callable[[dict[str, str], bytes], int]) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                receiver.received.append((headers, body))
                status = respond(headers, body)
                payload = b"" if status == 204 else b'{"code":"FAIL","message":"no"}'
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/wechat/notify"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def standin() -> Iterator[WeChatStandIn]:
    # Keys made once per module: RSA key generation is the slow part of starting a stand-in.
    with WeChatStandIn(
        retry_schedule_s=FAST_RETRIES,
        merchant_private_key=MERCHANT_KEY,
        platform_private_key=PLATFORM_KEY,
    ) as s:
        yield s
    clock.reset()


@pytest.fixture
def client(standin: WeChatStandIn) -> Iterator[WeChatPayClient]:
    with WeChatPayClient(standin.pay_config()) as c:
        yield c


@pytest.fixture
def receivers() -> Iterator[Callable[[Callable[[dict[str, str], bytes], int]], Receiver]]:
    made: list[Receiver] = []

    def make(respond: Callable[[dict[str, str], bytes], int]) -> Receiver:
        made.append(Receiver(respond))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _prepay(client: WeChatPayClient, notify_url: str, out_trade_no: str | None = None) -> str:
    return client.jsapi_prepay(
        out_trade_no=out_trade_no or uuid.uuid4().hex,
        description="雨伞押金",
        total_fen=DEPOSIT_FEN,
        payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        notify_url=notify_url,
    )


def _paid_notification(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> SentNotification:
    receiver = receivers(lambda h, b: 204)
    standin.pay(_prepay(client, receiver.url))
    sent = standin.notifications[-1]
    assert sent.wait_acknowledged()
    return sent


def test_prepay_returns_payment_params_whose_pay_sign_verifies_with_the_merchant_key(
    standin: WeChatStandIn, client: WeChatPayClient
) -> None:
    prepay_id = _prepay(client, "https://example.com/notify")
    params = client.request_payment_params(prepay_id).as_dict()

    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["appId"] == standin.appid
    assert params["package"] == f"prepay_id={prepay_id}"
    assert params["signType"] == "RSA"
    message = (
        f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    )
    assert signing.rsa_verify(standin.merchant_public_key, message, params["paySign"])


def test_an_order_cannot_be_paid_after_its_time_expire_and_closing_it_is_final(
    standin: WeChatStandIn, client: WeChatPayClient
) -> None:
    otn = uuid.uuid4().hex
    client.jsapi_prepay(
        out_trade_no=otn,
        description="雨伞押金",
        total_fen=DEPOSIT_FEN,
        payer_openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        notify_url="https://example.com/notify",
        time_expire=clock.now() + timedelta(minutes=30),
    )
    order = standin.find_order(otn)
    assert order.expires_at is not None
    assert order.expires_at.utcoffset() == timedelta(hours=8)  # sent in China time

    clock.advance(timedelta(minutes=31))
    with pytest.raises(StandInError, match="expired"):
        standin.pay(otn)
    assert client.query_order(otn)["trade_state"] == "NOTPAY"
    client.close_order(otn)
    assert client.query_order(otn)["trade_state"] == "CLOSED"
    with pytest.raises(WeChatPayApiError) as refused:
        _prepay(client, "https://example.com/notify", otn)
    assert refused.value.code == "ORDER_CLOSED"


def test_prepay_again_with_the_same_order_returns_the_same_prepay_id(
    client: WeChatPayClient,
) -> None:
    otn = uuid.uuid4().hex
    assert _prepay(client, "https://example.com/n", otn) == _prepay(
        client, "https://example.com/n", otn
    )


def test_a_request_signed_with_another_merchant_key_is_refused_with_sign_error(
    standin: WeChatStandIn,
) -> None:
    config = standin.pay_config()
    forged = dataclasses.replace(config, merchant_private_key=KEY_OTHER)
    with WeChatPayClient(forged) as c, pytest.raises(WeChatPayApiError) as err:
        _prepay(c, "https://example.com/n")
    assert (err.value.status, err.value.code) == (401, "SIGN_ERROR")
    assert standin.orders == {}


def test_a_request_whose_signed_timestamp_is_stale_is_refused(
    standin: WeChatStandIn, client: WeChatPayClient
) -> None:
    auth = signing.build_authorization(
        method="GET",
        path_with_query=f"/v3/pay/transactions/out-trade-no/x?mchid={standin.mchid}",
        body="",
        mchid=standin.mchid,
        serial_no=standin.merchant_serial,
        private_key=standin.pay_config().merchant_private_key,
        timestamp=int(clock.now().timestamp()) - 301,
    )
    response = httpx.get(
        f"{standin.url}/v3/pay/transactions/out-trade-no/x?mchid={standin.mchid}",
        headers={"Authorization": auth.header()},
    )
    assert response.status_code == 401
    assert response.json()["code"] == "SIGN_ERROR"


def test_a_response_not_signed_by_the_known_platform_key_is_refused(
    standin: WeChatStandIn,
) -> None:
    config = standin.pay_config()
    wrong = {standin.platform_serial: KEY_OTHER.public_key()}
    with (
        WeChatPayClient(dataclasses.replace(config, platform_public_keys=wrong)) as c,
        pytest.raises(BadSignature),
    ):
        _prepay(c, "https://example.com/n")


def test_paying_sends_a_notification_the_client_verifies_and_decrypts(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    verified: list[dict[str, Any]] = []

    def respond(headers: dict[str, str], body: bytes) -> int:
        verified.append(client.verify_notification(headers, body))
        return 204

    receiver = receivers(respond)
    otn = uuid.uuid4().hex
    standin.pay(_prepay(client, receiver.url, otn))

    sent = standin.notifications[-1]
    assert sent.wait_acknowledged()
    assert sent.attempts == [204]
    [resource] = verified
    assert resource["out_trade_no"] == otn
    assert resource["trade_state"] == "SUCCESS"
    assert resource["amount"]["total"] == DEPOSIT_FEN
    assert resource["payer"]["openid"] == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    envelope = client.parse_notification(*receiver.received[0])
    assert envelope.event_type == "TRANSACTION.SUCCESS"
    assert envelope.resource_type == "encrypt-resource"
    assert envelope.original_type == "transaction"
    # The order query, the other trusted source, agrees.
    order = client.query_order(otn)
    assert order["trade_state"] == "SUCCESS"
    assert order["transaction_id"] == resource["transaction_id"]


def test_a_replayed_notification_still_verifies_so_idempotency_is_the_receivers_job(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    sent = _paid_notification(standin, client, receivers)
    first = client.verify_notification(sent.headers, sent.body)
    assert client.verify_notification(sent.headers, sent.body) == first


def test_a_notification_with_a_forged_signature_is_refused(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    sent = _paid_notification(standin, client, receivers)
    forged = standin.sign_headers(sent.body, private_key=KEY_OTHER)
    with pytest.raises(BadSignature):
        client.verify_notification(forged, sent.body)
    # A body changed after signing is refused too.
    with pytest.raises(BadSignature):
        client.verify_notification(sent.headers, sent.body.replace("TRANSACTION", "TRANSACTIOM"))


def test_a_notification_with_a_stale_timestamp_is_refused(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    sent = _paid_notification(standin, client, receivers)
    old = int(clock.now().timestamp()) - 301
    with pytest.raises(StaleTimestamp):
        client.verify_notification(standin.sign_headers(sent.body, timestamp=old), sent.body)
    # The genuine headers themselves go stale once the merchant's clock passes 5 minutes.
    clock.advance(timedelta(minutes=6))
    with pytest.raises(StaleTimestamp):
        client.verify_notification(sent.headers, sent.body)


def test_a_notification_signed_under_an_unknown_serial_is_refused(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    sent = _paid_notification(standin, client, receivers)
    headers = standin.sign_headers(sent.body, serial="5157F09EFDC096DE15EBE81A47057A72")
    with pytest.raises(UnknownSerial):
        client.verify_notification(headers, sent.body)


def test_a_notification_with_tampered_ciphertext_is_refused_even_when_re_signed(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    sent = _paid_notification(standin, client, receivers)
    envelope = json.loads(sent.body)
    raw = bytearray(base64.b64decode(envelope["resource"]["ciphertext"]))
    raw[5] ^= 0x40
    envelope["resource"]["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    tampered = json.dumps(envelope)
    with pytest.raises(BadSignature):
        client.verify_notification(sent.headers, tampered)
    # Even with a valid platform signature (a stolen platform key), AEAD still refuses it.
    with pytest.raises(UndecryptableResource):
        client.verify_notification(standin.sign_headers(tampered), tampered)


def test_a_notification_without_signature_headers_or_envelope_is_malformed(
    standin: WeChatStandIn, client: WeChatPayClient
) -> None:
    with pytest.raises(MalformedMessage):
        client.verify_notification({}, "{}")
    with pytest.raises(MalformedMessage):
        client.verify_notification(standin.sign_headers('{"id":1}'), '{"id":1}')


def test_a_notification_is_retried_until_the_receiver_acknowledges(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    answers = iter([500, 503])
    receiver = receivers(lambda h, b: next(answers, 204))
    standin.pay(_prepay(client, receiver.url))

    sent = standin.notifications[-1]
    assert sent.wait_acknowledged()
    assert sent.attempts == [500, 503, 204]
    bodies = {body for _, body in receiver.received}
    assert len(bodies) == 1  # the same notification (same id), re-signed per attempt
    for headers, body in receiver.received:
        client.verify_notification(headers, body)


def test_notifications_stop_after_the_retry_schedule_when_never_acknowledged(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    receiver = receivers(lambda h, b: 500)
    standin.pay(_prepay(client, receiver.url))
    sent = standin.notifications[-1]
    assert sent.finished.wait(5)
    assert not sent.acknowledged.is_set()
    assert sent.attempts == [500] * (1 + len(FAST_RETRIES))
    assert len(receiver.received) == 4


def test_an_unreachable_notify_url_is_retried_too(
    standin: WeChatStandIn, client: WeChatPayClient
) -> None:
    standin.pay(_prepay(client, "http://127.0.0.1:9/notify"))
    sent = standin.notifications[-1]
    assert sent.finished.wait(5)
    assert sent.attempts == ["ConnectError"] * 4


def test_querying_an_unknown_order_raises_order_not_found(client: WeChatPayClient) -> None:
    with pytest.raises(OrderNotFound) as err:
        client.query_order("never-made")
    assert (err.value.status, err.value.code) == (404, "ORDER_NOT_EXIST")
    assert not err.value.retryable


def test_an_unpaid_order_queries_as_notpay_and_can_be_closed(
    standin: WeChatStandIn, client: WeChatPayClient
) -> None:
    otn = uuid.uuid4().hex
    _prepay(client, "https://example.com/n", otn)
    assert client.query_order(otn)["trade_state"] == "NOTPAY"
    client.close_order(otn)
    assert client.query_order(otn)["trade_state"] == "CLOSED"
    with pytest.raises(StandInError):
        standin.pay(otn)


def test_the_rider_pays_through_the_stand_ins_http_admin_endpoint(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    receiver = receivers(lambda h, b: 200)
    prepay_id = _prepay(client, receiver.url)
    response = httpx.post(f"{standin.url}/_standin/pay", json={"prepay_id": prepay_id})
    assert response.status_code == 200
    assert response.json()["trade_state"] == "SUCCESS"
    assert standin.notifications[-1].wait_acknowledged()
    listed = httpx.get(f"{standin.url}/_standin/notifications").json()
    assert listed[-1]["acknowledged"] is True
    assert httpx.post(f"{standin.url}/_standin/pay", json={"prepay_id": "nope"}).status_code == 400


def test_prepay_for_a_paid_order_is_refused(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    sent = _paid_notification(standin, client, receivers)
    otn = sent.resource["out_trade_no"]
    with pytest.raises(WeChatPayApiError) as err:
        _prepay(client, "https://example.com/n", otn)
    assert err.value.code == "ORDERPAID"


def test_a_refund_is_idempotent_per_out_refund_no(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    standin.auto_complete_refunds = False
    otn = _paid_notification(standin, client, receivers).resource["out_trade_no"]

    first = client.refund(
        out_refund_no="R-1", refund_fen=DEPOSIT_FEN, total_fen=DEPOSIT_FEN, out_trade_no=otn
    )
    again = client.refund(
        out_refund_no="R-1", refund_fen=DEPOSIT_FEN, total_fen=DEPOSIT_FEN, out_trade_no=otn
    )
    assert first["status"] == "PROCESSING"
    assert again["refund_id"] == first["refund_id"]
    assert standin.find_order(otn).refunded == DEPOSIT_FEN
    # A second refund under a new number would refund more than was paid.
    with pytest.raises(WeChatPayApiError) as err:
        client.refund(
            out_refund_no="R-2", refund_fen=DEPOSIT_FEN, total_fen=DEPOSIT_FEN, out_trade_no=otn
        )
    assert err.value.code == "PARAM_ERROR"
    assert client.query_refund("R-1")["status"] == "PROCESSING"
    standin.complete_refund("R-1")
    assert client.query_refund("R-1")["status"] == "SUCCESS"
    assert client.query_order(otn)["trade_state"] == "REFUND"


def test_a_refund_retried_after_system_errors_succeeds_once(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    otn = _paid_notification(standin, client, receivers).resource["out_trade_no"]
    standin.fail_next_refunds(2)

    errors: list[WeChatPayApiError] = []
    result: dict[str, Any] | None = None
    for _ in range(5):
        try:
            result = client.refund(
                out_refund_no="R-retry",
                refund_fen=DEPOSIT_FEN,
                total_fen=DEPOSIT_FEN,
                out_trade_no=otn,
            )
            break
        except WeChatPayApiError as exc:
            errors.append(exc)

    assert all(e.retryable for e in errors)
    assert [(e.status, e.code) for e in errors] == [(500, "SYSTEM_ERROR")] * 2
    assert result is not None
    assert list(standin.refunds) == ["R-retry"]
    assert standin.find_order(otn).refunded == DEPOSIT_FEN


def test_a_completed_refund_sends_a_verified_refund_success_notification(
    standin: WeChatStandIn, client: WeChatPayClient, receivers: Any
) -> None:
    otn = _paid_notification(standin, client, receivers).resource["out_trade_no"]
    got: list[Any] = []

    def respond(headers: dict[str, str], body: bytes) -> int:
        got.append(client.parse_notification(headers, body))
        return 204

    receiver = receivers(respond)
    refund = client.refund(
        out_refund_no="R-n",
        refund_fen=DEPOSIT_FEN,
        total_fen=DEPOSIT_FEN,
        out_trade_no=otn,
        notify_url=receiver.url,
    )
    sent = next(
        n
        for n in _wait_for(lambda: [n for n in standin.notifications if n.url == receiver.url])
        if n.event_type == "REFUND.SUCCESS"
    )
    assert sent.wait_acknowledged()
    [note] = got
    assert note.event_type == "REFUND.SUCCESS"
    assert note.original_type == "refund"
    assert note.resource["out_refund_no"] == "R-n"
    assert note.resource["refund_id"] == refund["refund_id"]
    assert note.resource["refund_status"] == "SUCCESS"
    assert note.resource["amount"]["refund"] == DEPOSIT_FEN


def test_refunding_an_unknown_order_is_refused(client: WeChatPayClient) -> None:
    with pytest.raises(OrderNotFound):
        client.refund(out_refund_no="R-x", refund_fen=1, total_fen=1, out_trade_no="nope")


def test_an_unreachable_wechat_pay_raises_unavailable(standin: WeChatStandIn) -> None:
    config = standin.pay_config(timeout_s=1)
    dead = dataclasses.replace(config, base_url="http://127.0.0.1:9")
    with WeChatPayClient(dead) as c, pytest.raises(WeChatPayUnavailable):
        c.query_order("x")


def _wait_for(get: Callable[[], list[SentNotification]]) -> list[SentNotification]:
    done = threading.Event()
    for _ in range(500):
        found = get()
        if found:
            return found
        done.wait(0.01)
    raise AssertionError("no notification sent")
