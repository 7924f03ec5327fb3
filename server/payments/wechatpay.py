"""WeChat Pay API v3 client: signed requests, verified responses and notifications.

Written on `cryptography` + `httpx` rather than on the `wechatpayv3` package (2.0.4); the
reasons are in `server/payments/README.md`. Protocol references are the v3 docs:
"签名生成" (request Authorization), "签名验证" (Wechatpay-* headers), "回调报文解密"
(AEAD_AES_256_GCM resource), JSAPI 下单 / 查询订单 / 申请退款 / 查询单笔退款.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, cast
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from server.core.clock import clock
from server.payments import signing

REAL_PAY_BASE_URL = "https://api.mch.weixin.qq.com"

# Error codes WeChat documents as "try again later, same request" (系统错误 / 频率限制 / 银行
# 系统异常); a refund or query that fails with one of these is retried with the same
# out_refund_no, which WeChat treats as the same refund.
RETRYABLE_CODES = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "BANK_ERROR", "SYSTEMERROR"})


class WeChatPayError(Exception):
    """Anything that went wrong talking to WeChat Pay."""


class WeChatPayUnavailable(WeChatPayError):
    """No answer (connection refused, timeout): the request may or may not have happened."""

    retryable = True


#: WeChat Pay writes its times in China Standard Time.
CHINA = timezone(timedelta(hours=8))


def rfc3339(moment: datetime) -> str:
    """A time as WeChat Pay writes it (`time_expire`, `success_time`): RFC 3339, China time."""
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


class WeChatPayApiError(WeChatPayError):
    """WeChat answered 4xx/5xx with `{"code": ..., "message": ...}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"WeChat Pay {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.code in RETRYABLE_CODES


class OrderNotFound(WeChatPayApiError):
    """ORDER_NOT_EXIST / RESOURCE_NOT_EXISTS: WeChat has no such order or refund."""


class VerificationError(WeChatPayError):
    """A response or notification that must not be trusted."""


class BadSignature(VerificationError):
    pass


class StaleTimestamp(VerificationError):
    pass


class UnknownSerial(VerificationError):
    """Signed with a platform key (serial) this merchant does not know."""


class UndecryptableResource(VerificationError):
    """The notification's resource does not decrypt (tampered, or a wrong APIv3 key)."""


class MalformedMessage(VerificationError):
    pass


@dataclass(frozen=True)
class WeChatPayConfig:
    mchid: str
    appid: str
    merchant_serial: str
    merchant_private_key: rsa.RSAPrivateKey
    apiv3_key: bytes
    # serial -> key; more than one while WeChat rotates its platform certificate.
    platform_public_keys: Mapping[str, rsa.RSAPublicKey]
    base_url: str = REAL_PAY_BASE_URL
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        signing.apiv3_key_bytes(self.apiv3_key)


@dataclass(frozen=True)
class Notification:
    """A verified, decrypted WeChat Pay notification (回调通知)."""

    id: str
    create_time: str
    event_type: str
    resource_type: str
    summary: str
    original_type: str
    resource: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentParams:
    """Exactly what the mini-program passes to `wx.requestPayment`."""

    # WeChat's own (camelCase) field names, so `as_dict()` goes to the client as is.
    appId: str
    timeStamp: str
    nonceStr: str
    package: str
    signType: str
    paySign: str

    def as_dict(self) -> dict[str, str]:
        return {
            "appId": self.appId,
            "timeStamp": self.timeStamp,
            "nonceStr": self.nonceStr,
            "package": self.package,
            "signType": self.signType,
            "paySign": self.paySign,
        }


class WeChatPayClient:
    def __init__(self, config: WeChatPayConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self._http = http or httpx.Client(timeout=config.timeout_s)
        self._owns_http = http is None

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> WeChatPayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- verification (responses and notifications) -------------------------------------

    def verify_signature(self, headers: Mapping[str, str], body: str) -> None:
        """Check Wechatpay-Signature over timestamp, nonce and body (v3 "签名验证")."""
        h = {k.lower(): v for k, v in headers.items()}
        timestamp = h.get("wechatpay-timestamp", "")
        nonce = h.get("wechatpay-nonce", "")
        signature = h.get("wechatpay-signature", "")
        serial = h.get("wechatpay-serial", "")
        if not (timestamp and nonce and signature and serial):
            raise MalformedMessage("missing Wechatpay-* signature headers")
        sig_type = h.get("wechatpay-signature-type", signing.SCHEMA)
        if sig_type != signing.SCHEMA:
            raise MalformedMessage(f"unsupported signature type {sig_type!r}")
        key = self.config.platform_public_keys.get(serial)
        if key is None:
            raise UnknownSerial(f"unknown platform serial {serial!r}")
        if not signing.timestamp_is_fresh(timestamp, clock.now().timestamp()):
            raise StaleTimestamp(f"Wechatpay-Timestamp {timestamp!r} is more than 5 minutes off")
        if not signing.rsa_verify(key, signing.response_message(timestamp, nonce, body), signature):
            raise BadSignature("Wechatpay-Signature does not verify with the platform key")

    def parse_notification(self, headers: Mapping[str, str], body: str | bytes) -> Notification:
        text = body.decode() if isinstance(body, bytes) else body
        self.verify_signature(headers, text)
        try:
            envelope = json.loads(text)
            resource = envelope["resource"]
            if resource["algorithm"] != signing.AEAD_ALGORITHM:
                raise MalformedMessage(f"unsupported algorithm {resource['algorithm']!r}")
            nonce = str(resource["nonce"])
            associated = str(resource.get("associated_data") or "")
            ciphertext = str(resource["ciphertext"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedMessage("notification body is not a WeChat Pay envelope") from exc
        try:
            plain = signing.aead_decrypt(self.config.apiv3_key, nonce, associated, ciphertext)
        except ValueError as exc:
            raise UndecryptableResource(str(exc)) from exc
        try:
            decrypted = json.loads(plain)
        except ValueError as exc:
            raise MalformedMessage("decrypted resource is not JSON") from exc
        if not isinstance(decrypted, dict):
            raise MalformedMessage("decrypted resource is not an object")
        return Notification(
            id=str(envelope.get("id", "")),
            create_time=str(envelope.get("create_time", "")),
            event_type=str(envelope.get("event_type", "")),
            resource_type=str(envelope.get("resource_type", "")),
            summary=str(envelope.get("summary", "")),
            original_type=str(resource.get("original_type", "")),
            resource=decrypted,
        )

    def verify_notification(self, headers: Mapping[str, str], body: str | bytes) -> dict[str, Any]:
        """The decrypted resource of a genuine notification; raises `VerificationError`."""
        return self.parse_notification(headers, body).resource

    # -- requests -------------------------------------------------------------------------

    def _request(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        body = "" if payload is None else json.dumps(payload, ensure_ascii=False)
        request = self._http.build_request(
            method,
            self.config.base_url.rstrip("/") + path,
            content=body.encode() if body else None,
            headers={"Accept": "application/json", "Content-Type": "application/json"},
        )
        # Sign exactly the path and query that go on the wire.
        auth = signing.build_authorization(
            method=method,
            path_with_query=request.url.raw_path.decode(),
            body=body,
            mchid=self.config.mchid,
            serial_no=self.config.merchant_serial,
            private_key=self.config.merchant_private_key,
            timestamp=int(clock.now().timestamp()),
        )
        request.headers["Authorization"] = auth.header()
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise WeChatPayUnavailable(f"WeChat Pay unreachable: {exc}") from exc
        text = response.text
        if response.status_code >= 400:
            code, message = "UNKNOWN", text[:200]
            try:
                err = response.json()
                code, message = str(err.get("code", code)), str(err.get("message", message))
            except ValueError:
                pass
            cls = (
                OrderNotFound
                if code in ("ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS")
                else WeChatPayApiError
            )
            raise cls(response.status_code, code, message)
        self.verify_signature(response.headers, text)
        return response.json() if text else None

    def jsapi_prepay(
        self,
        *,
        out_trade_no: str,
        description: str,
        total_fen: int,
        payer_openid: str,
        notify_url: str,
        attach: str | None = None,
        time_expire: datetime | None = None,
    ) -> str:
        """JSAPI 下单; returns the prepay_id (valid two hours at WeChat). `time_expire`: the
        order cannot be paid after it (sent as RFC 3339 in China time, as WeChat writes it)."""
        payload: dict[str, Any] = {
            "appid": self.config.appid,
            "mchid": self.config.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "notify_url": notify_url,
            "amount": {"total": total_fen, "currency": "CNY"},
            "payer": {"openid": payer_openid},
        }
        if attach is not None:
            payload["attach"] = attach
        if time_expire is not None:
            payload["time_expire"] = rfc3339(time_expire)
        data = self._request("POST", "/v3/pay/transactions/jsapi", payload)
        return str(data["prepay_id"])

    def request_payment_params(self, prepay_id: str) -> PaymentParams:
        """Parameters for `wx.requestPayment`, paySign made with the merchant key."""
        time_stamp = str(int(clock.now().timestamp()))
        nonce = signing.nonce_str()
        package = f"prepay_id={prepay_id}"
        message = signing.pay_sign_message(self.config.appid, time_stamp, nonce, package)
        return PaymentParams(
            appId=self.config.appid,
            timeStamp=time_stamp,
            nonceStr=nonce,
            package=package,
            signType="RSA",
            paySign=signing.rsa_sign(self.config.merchant_private_key, message),
        )

    def query_order(self, out_trade_no: str) -> dict[str, Any]:
        """商户订单号查询订单: `trade_state` is SUCCESS, NOTPAY, CLOSED, REFUND, ..."""
        path = (
            f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"
            f"?mchid={quote(self.config.mchid, safe='')}"
        )
        return cast(dict[str, Any], self._request("GET", path))

    def close_order(self, out_trade_no: str) -> None:
        """关闭订单 (204 No Content); an order already paid answers ORDERPAID."""
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close"
        self._request("POST", path, {"mchid": self.config.mchid})

    def refund(
        self,
        *,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        out_trade_no: str | None = None,
        transaction_id: str | None = None,
        notify_url: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """申请退款. Same out_refund_no = same refund at WeChat, so retrying is safe."""
        if (out_trade_no is None) == (transaction_id is None):
            raise ValueError("give exactly one of out_trade_no and transaction_id")
        payload: dict[str, Any] = {
            "out_refund_no": out_refund_no,
            "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"},
        }
        if out_trade_no is not None:
            payload["out_trade_no"] = out_trade_no
        else:
            payload["transaction_id"] = transaction_id
        if notify_url is not None:
            payload["notify_url"] = notify_url
        if reason is not None:
            payload["reason"] = reason
        return cast(dict[str, Any], self._request("POST", "/v3/refund/domestic/refunds", payload))

    def query_refund(self, out_refund_no: str) -> dict[str, Any]:
        """查询单笔退款: `status` is SUCCESS, PROCESSING, CLOSED or ABNORMAL."""
        path = f"/v3/refund/domestic/refunds/{quote(out_refund_no, safe='')}"
        return cast(dict[str, Any], self._request("GET", path))

    def profit_sharing_order(
        self,
        *,
        out_order_no: str,
        transaction_id: str,
        receivers: Sequence[Mapping[str, Any]],
        unfreeze_unsplit: bool,
    ) -> dict[str, Any]:
        """请求分账: split part of a paid transaction to receivers (`type`, `account`,
        `amount` fen, `description`). The same out_order_no is the same order at WeChat, so
        retrying after an error or a lost answer never splits twice. Answers `state`
        PROCESSING or FINISHED, and each receiver's `result` (PENDING, SUCCESS, CLOSED)."""
        payload: dict[str, Any] = {
            "appid": self.config.appid,
            "transaction_id": transaction_id,
            "out_order_no": out_order_no,
            "receivers": [dict(r) for r in receivers],
            "unfreeze_unsplit": unfreeze_unsplit,
        }
        return cast(dict[str, Any], self._request("POST", "/v3/profitsharing/orders", payload))

    def query_profit_sharing_order(self, out_order_no: str, transaction_id: str) -> dict[str, Any]:
        """查询分账结果."""
        path = (
            f"/v3/profitsharing/orders/{quote(out_order_no, safe='')}"
            f"?transaction_id={quote(transaction_id, safe='')}"
        )
        return cast(dict[str, Any], self._request("GET", path))
