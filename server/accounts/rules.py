"""Pure account rules: password hashing, token hashing, who may see what. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from server.models.account import Role

# scrypt (stdlib, RFC 7914) with OWASP's minimum cost: N=2^17 is their advice for new
# systems, but a login must stay well under 100 ms on a shared 2-core box; 2^14 with r=8
# costs 16 MiB and ~40 ms here. The parameters are stored with the hash, so raising them
# later needs no migration.
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt_hex),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest_hex) // 2,
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking. Operators see everything; an advertiser's user only its advertiser's
    data; a partner's user only its partner's."""

    role: Role
    #: None for the shared operator token (settings.operator_token), which has no user row.
    user_id: int | None
    login: str
    advertiser_id: int | None = None
    partner_id: int | None = None

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR

    def may_see_advertiser(self, advertiser_id: int) -> bool:
        return self.is_operator or self.advertiser_id == advertiser_id

    def may_see_partner(self, partner_id: int) -> bool:
        return self.is_operator or self.partner_id == partner_id


OPERATOR_TOKEN_PRINCIPAL = Principal(role=Role.OPERATOR, user_id=None, login="operator-token")
