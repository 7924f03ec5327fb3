"""Kiosk MQTT passwords in Mosquitto's `$7$` format (PBKDF2-HMAC-SHA512).

`mosquitto_passwd` 2.0 writes `user:$7$<iterations>$<base64 salt>$<base64 hash>` with a
12-byte salt, a 64-byte derived key and 101 iterations. We write the same format so a file
produced here is read by Mosquitto unchanged, and the embedded broker verifies it too.

The iteration count is Mosquitto's default on purpose: kiosk passwords are 192-bit random
tokens, not human secrets, so slow hashing buys nothing against guessing, while a fleet-wide
reconnect storm (thousands of CONNECTs after a broker restart) pays it on every connect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
_PREFIX = "$7$"


def generate_password() -> str:
    """A fresh random MQTT password (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def hash_password(
    password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None
) -> str:
    if iterations < 1:
        raise ValueError("iterations must be positive")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    derived = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return (
        f"{_PREFIX}{iterations}${base64.b64encode(salt).decode()}"
        f"${base64.b64encode(derived).decode()}"
    )


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches a `$7$` hash. Any malformed hash is a plain mismatch."""
    if not encoded.startswith(_PREFIX):
        return False
    parts = encoded[len(_PREFIX) :].split("$")
    if len(parts) != 3:
        return False
    try:
        iterations = int(parts[0])
        salt = base64.b64decode(parts[1], validate=True)
        expected = base64.b64decode(parts[2], validate=True)
    except (ValueError, binascii.Error):
        return False
    if iterations < 1 or not salt or not expected:
        return False
    derived = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(derived, expected)


def render_password_file(users: Iterable[tuple[str, str]]) -> str:
    """`username:hash` lines, sorted by username so rewrites are diff-friendly."""
    lines = []
    for username, encoded in sorted(users):
        if ":" in username or "\n" in username or not username:
            raise ValueError(f"invalid MQTT username {username!r}")
        lines.append(f"{username}:{encoded}")
    return "\n".join(lines) + "\n"


def parse_password_file(text: str) -> dict[str, str]:
    users: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        username, sep, encoded = line.partition(":")
        if sep and username:
            users[username] = encoded
    return users


def read_password_file(path: Path) -> dict[str, str]:
    return parse_password_file(path.read_text(encoding="utf-8"))


def hash_cloud_users(plain: Mapping[str, str]) -> list[tuple[str, str]]:
    """Hash the cloud-side users (bridge, API publisher) whose passwords live in settings."""
    return [(username, hash_password(password)) for username, password in plain.items()]


def atomic_write(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Write via a temp file and rename, so a broker reloading mid-write never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
