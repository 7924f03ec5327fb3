"""Creatives' media files, stored by content: `<root>/<first two hex>/<sha256>`.

Content addressing makes the upload idempotent (the same file twice is one file), lets the
kiosk verify what it downloaded against the SHA-256 in its playlist (firmware_protocol
SPEC §4.6), and lets the URL be served without credentials: kiosks hold MQTT credentials,
not API tokens, and a SHA-256 cannot be guessed, so knowing the address means having been
given it. A file is written under a temporary name and renamed into place only when it is
complete, typed and (if the uploader said so) has the digest it was meant to have.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from server.core.errors import DomainError
from server.creatives import rules

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class MediaTooLarge(DomainError):
    status_code = 413
    code = "media_too_large"


class UnsupportedMedia(DomainError):
    status_code = 415
    code = "unsupported_media"


class DigestMismatch(DomainError):
    code = "digest_mismatch"


class EmptyMedia(DomainError):
    code = "empty_media"


@dataclass(frozen=True, slots=True)
class StoredMedia:
    sha256: str
    size: int
    media_type: rules.MediaType
    path: Path


class MediaStore:
    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")

    def url(self, sha256: str) -> str:
        return f"{self.base_url}/api/v1/media/{sha256}"

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def lookup(self, sha256: str) -> StoredMedia | None:
        if not _SHA256.match(sha256):
            return None
        path = self._path(sha256)
        try:
            with path.open("rb") as f:
                head = f.read(rules.SNIFF_BYTES)
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        media_type = rules.sniff(head)
        if media_type is None:  # only typed files are ever renamed into place
            return None
        return StoredMedia(sha256, size, media_type, path)

    def files(self) -> Iterator[tuple[str, Path, float]]:
        """Every stored file and upload in progress: (sha256 or "", path, mtime)."""
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir():
                continue
            for path in sorted(sub.iterdir()):
                name = path.name if _SHA256.match(path.name) and sub.name != "tmp" else ""
                try:
                    yield name, path, path.stat().st_mtime
                except FileNotFoundError:
                    continue

    async def save(
        self, chunks: AsyncIterator[bytes], *, max_bytes: int, expected_sha256: str | None = None
    ) -> StoredMedia:
        """Stream an upload to disk while hashing it. Nothing is left behind on failure."""
        tmp_dir = self.root / "tmp"
        await anyio.Path(tmp_dir).mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"upload-{secrets.token_hex(8)}"
        digest = hashlib.sha256()
        head = b""
        size = 0
        try:
            async with await anyio.open_file(tmp, "wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaTooLarge(
                            f"media files are limited to {max_bytes} bytes", max_bytes=max_bytes
                        )
                    if len(head) < rules.SNIFF_BYTES:
                        head += chunk[: rules.SNIFF_BYTES - len(head)]
                    digest.update(chunk)
                    await f.write(chunk)
            if size == 0:
                raise EmptyMedia("the upload is empty; send the file as the request body")
            media_type = rules.sniff(head)
            if media_type is None:
                raise UnsupportedMedia(
                    "not an image (PNG, JPEG, GIF, WebP, AVIF) or video (MP4, MOV, WebM) file"
                )
            sha256 = digest.hexdigest()
            if expected_sha256 is not None and expected_sha256.lower() != sha256:
                raise DigestMismatch(
                    "the file's SHA-256 is not the one given in X-Content-SHA256",
                    expected=expected_sha256.lower(),
                    actual=sha256,
                )
            final = self._path(sha256)
            await anyio.Path(final.parent).mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        return StoredMedia(sha256, size, media_type, final)
