"""WeChat Pay v3 signing and resource encryption, checked against messages built by hand
from the v3 docs (签名生成 / 签名验证 / 回调报文解密)."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from server.payments import signing

KEY = signing.generate_private_key()
APIV3 = b"0123456789abcdef0123456789abcdef"


def test_request_message_is_five_lines_each_ending_in_newline_as_in_the_docs_example() -> None:
    message = signing.request_message(
        "get", "/v3/certificates", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", ""
    )
    assert message == "GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"


def test_response_and_pay_sign_messages_follow_the_docs() -> None:
    assert signing.response_message("1", "N", '{"a":1}') == '1\nN\n{"a":1}\n'
    assert (
        signing.pay_sign_message("wx8888", "1414561699", "5K8264", "prepay_id=wx201410")
        == "wx8888\n1414561699\n5K8264\nprepay_id=wx201410\n"
    )


def test_authorization_header_signs_the_request_message_with_the_merchant_key() -> None:
    auth = signing.build_authorization(
        method="POST",
        path_with_query="/v3/pay/transactions/jsapi",
        body='{"x":1}',
        mchid="1900000109",
        serial_no="ABC123",
        private_key=KEY,
        timestamp=1554208460,
        nonce="NONCE",
    )
    header = auth.header()
    assert header.startswith('WECHATPAY2-SHA256-RSA2048 mchid="1900000109",nonce_str="NONCE",')
    # Verify independently, with the message written out by hand.
    expected = b'POST\n/v3/pay/transactions/jsapi\n1554208460\nNONCE\n{"x":1}\n'
    KEY.public_key().verify(
        base64.b64decode(auth.signature), expected, padding.PKCS1v15(), hashes.SHA256()
    )
    assert signing.parse_authorization(header) == auth


@pytest.mark.parametrize(
    "header",
    [
        "",
        'WECHATPAY2-SHA256-RSA1024 mchid="1",nonce_str="n",signature="s",timestamp="1",'
        'serial_no="x"',
        'WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",signature="s",timestamp="1"',
        "WECHATPAY2-SHA256-RSA2048 mchid=1,nonce_str=n",
    ],
)
def test_malformed_authorization_headers_do_not_parse(header: str) -> None:
    assert signing.parse_authorization(header) is None


def test_a_signature_does_not_verify_over_another_message_or_when_not_base64() -> None:
    sig = signing.rsa_sign(KEY, "1\nN\nbody\n")
    assert signing.rsa_verify(KEY.public_key(), "1\nN\nbody\n", sig)
    assert not signing.rsa_verify(KEY.public_key(), "1\nN\nbodY\n", sig)
    assert not signing.rsa_verify(signing.generate_private_key().public_key(), "1\nN\nbody\n", sig)
    assert not signing.rsa_verify(KEY.public_key(), "1\nN\nbody\n", "not base64!")


def test_resource_ciphertext_is_aes_256_gcm_with_the_tag_appended() -> None:
    sealed = signing.aead_encrypt(APIV3, "fdasflkja484", "transaction", '{"k":"v"}')
    raw = base64.b64decode(sealed)
    assert len(raw) == len('{"k":"v"}') + 16
    # Decrypts with a plain AES-GCM from the key, the 12-byte nonce and the associated data.
    assert AESGCM(APIV3).decrypt(b"fdasflkja484", raw, b"transaction") == b'{"k":"v"}'
    assert signing.aead_decrypt(APIV3, "fdasflkja484", "transaction", sealed) == '{"k":"v"}'


def test_resource_with_a_flipped_byte_wrong_associated_data_or_key_does_not_decrypt() -> None:
    sealed = signing.aead_encrypt(APIV3, "fdasflkja484", "transaction", '{"k":"v"}')
    raw = bytearray(base64.b64decode(sealed))
    raw[0] ^= 1
    tampered = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(ValueError, match="does not decrypt"):
        signing.aead_decrypt(APIV3, "fdasflkja484", "transaction", tampered)
    with pytest.raises(ValueError, match="does not decrypt"):
        signing.aead_decrypt(APIV3, "fdasflkja484", "refund", sealed)
    with pytest.raises(ValueError, match="does not decrypt"):
        signing.aead_decrypt(b"x" * 32, "fdasflkja484", "transaction", sealed)
    with pytest.raises(ValueError, match="does not decrypt"):
        signing.aead_decrypt(APIV3, "fdasflkja484", "transaction", "%%%")


def test_timestamps_more_than_five_minutes_off_either_way_are_not_fresh() -> None:
    assert signing.timestamp_is_fresh("1000", 1300)
    assert signing.timestamp_is_fresh("1300", 1000)
    assert not signing.timestamp_is_fresh("1000", 1301)
    assert not signing.timestamp_is_fresh("1301", 1000)
    assert not signing.timestamp_is_fresh("-5", 0)
    assert not signing.timestamp_is_fresh("", 0)


def test_the_apiv3_key_must_be_32_bytes() -> None:
    assert signing.apiv3_key_bytes("a" * 32) == b"a" * 32
    with pytest.raises(ValueError, match="32 bytes"):
        signing.apiv3_key_bytes("short")


def test_keys_load_from_pem_and_from_a_platform_certificate() -> None:
    assert signing.load_private_key(signing.private_key_pem(KEY)).private_numbers() == (
        KEY.private_numbers()
    )
    pub = signing.load_public_key(signing.public_key_pem(KEY.public_key()))
    assert pub.public_numbers() == KEY.public_key().public_numbers()

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(0x5157F09EFDC096DE15EBE81A47057A72)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(KEY, hashes.SHA256())
    )
    from_cert = signing.load_public_key(cert.public_bytes(Encoding.PEM))
    assert from_cert.public_numbers() == KEY.public_key().public_numbers()


def test_nonces_are_random_upper_case_alphanumerics() -> None:
    a, b = signing.nonce_str(), signing.nonce_str()
    assert a != b
    assert len(a) == 32
    assert a.isalnum()
    assert a.upper() == a
