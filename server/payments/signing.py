"""WeChat Pay API v3 signatures and resource encryption, as pure functions (no I/O).

Shared by the client (`wechatpay.py`) and the local stand-in (`server/wechat/standin.py`);
the unit tests check them against messages built by hand from the WeChat Pay v3 docs
("签名生成", "签名验证", "证书和回调报文解密").
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509 import load_pem_x509_certificate

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
AEAD_ALGORITHM = "AEAD_AES_256_GCM"
# WeChat Pay rejects (and tells merchants to reject) signatures more than 5 minutes off.
MAX_CLOCK_SKEW_S = 300

_NONCE_ALPHABET = string.ascii_uppercase + string.digits


def nonce_str(length: int = 32) -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


def request_message(
    method: str, path_with_query: str, timestamp: str, nonce: str, body: str
) -> str:
    """签名串 of a merchant request: one field per line, each line ending in `\\n`.

    `body` is the empty string for GET (v3 docs: "请求报文主体 ... GET 请求为空").
    """
    return f"{method.upper()}\n{path_with_query}\n{timestamp}\n{nonce}\n{body}\n"


def response_message(timestamp: str, nonce: str, body: str) -> str:
    """签名串 of a WeChat response or notification (verified with the platform key)."""
    return f"{timestamp}\n{nonce}\n{body}\n"


def pay_sign_message(app_id: str, time_stamp: str, nonce: str, package: str) -> str:
    """签名串 of `wx.requestPayment` (JSAPI / mini-program 调起支付)."""
    return f"{app_id}\n{time_stamp}\n{nonce}\n{package}\n"


def rsa_sign(private_key: rsa.RSAPrivateKey, message: str) -> str:
    raw = private_key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode()


def rsa_verify(public_key: rsa.RSAPublicKey, message: str, signature_b64: str) -> bool:
    try:
        raw = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(raw, message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Authorization:
    mchid: str
    nonce_str: str
    signature: str
    timestamp: str
    serial_no: str

    def header(self) -> str:
        return (
            f'{SCHEMA} mchid="{self.mchid}",nonce_str="{self.nonce_str}",'
            f'signature="{self.signature}",timestamp="{self.timestamp}",'
            f'serial_no="{self.serial_no}"'
        )


_AUTH_PARAM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')


def build_authorization(
    *,
    method: str,
    path_with_query: str,
    body: str,
    mchid: str,
    serial_no: str,
    private_key: rsa.RSAPrivateKey,
    timestamp: int,
    nonce: str | None = None,
) -> Authorization:
    nonce = nonce or nonce_str()
    message = request_message(method, path_with_query, str(timestamp), nonce, body)
    return Authorization(
        mchid=mchid,
        nonce_str=nonce,
        signature=rsa_sign(private_key, message),
        timestamp=str(timestamp),
        serial_no=serial_no,
    )


def parse_authorization(header: str) -> Authorization | None:
    """The parts of an `Authorization: WECHATPAY2-SHA256-RSA2048 k="v",...` header, or None."""
    schema, _, params = header.strip().partition(" ")
    if schema != SCHEMA:
        return None
    fields: dict[str, str] = {}
    for part in params.split(","):
        m = _AUTH_PARAM.fullmatch(part)
        if m is None:
            return None
        fields[m.group(1)] = m.group(2)
    try:
        return Authorization(
            mchid=fields["mchid"],
            nonce_str=fields["nonce_str"],
            signature=fields["signature"],
            timestamp=fields["timestamp"],
            serial_no=fields["serial_no"],
        )
    except KeyError:
        return None


def timestamp_is_fresh(timestamp: str, now_s: float, max_skew_s: int = MAX_CLOCK_SKEW_S) -> bool:
    if not timestamp.isdigit():
        return False
    return abs(now_s - int(timestamp)) <= max_skew_s


def aead_encrypt(apiv3_key: bytes, nonce: str, associated_data: str, plaintext: str) -> str:
    """base64(ciphertext || 16-byte tag), the `resource.ciphertext` of a notification."""
    sealed = AESGCM(apiv3_key).encrypt(nonce.encode(), plaintext.encode(), associated_data.encode())
    return base64.b64encode(sealed).decode()


def aead_decrypt(apiv3_key: bytes, nonce: str, associated_data: str, ciphertext_b64: str) -> str:
    """Raises `ValueError` when the ciphertext, nonce, associated data or key do not match."""
    try:
        sealed = base64.b64decode(ciphertext_b64, validate=True)
        plain = AESGCM(apiv3_key).decrypt(nonce.encode(), sealed, associated_data.encode())
    except (binascii.Error, InvalidTag) as exc:
        raise ValueError("resource does not decrypt with the APIv3 key") from exc
    return plain.decode()


def apiv3_key_bytes(key: str | bytes) -> bytes:
    """The APIv3 key is a 32-character string set in the merchant platform, used as raw bytes."""
    raw = key.encode() if isinstance(key, str) else key
    if len(raw) != 32:
        raise ValueError("the APIv3 key must be 32 bytes")
    return raw


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def generate_serial() -> str:
    """A certificate serial number as WeChat prints it: upper-case hex."""
    return secrets.token_hex(20).upper()


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("WeChat Pay merchant keys are RSA keys")
    return key


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """A platform public key from a `PUBLIC KEY` PEM (微信支付公钥) or a platform certificate."""
    data = pem.encode() if isinstance(pem, str) else pem
    key = (
        load_pem_x509_certificate(data).public_key()
        if b"BEGIN CERTIFICATE" in data
        else serialization.load_pem_public_key(data)
    )
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("WeChat Pay platform keys are RSA keys")
    return key
