"""Pydantic I/O of the creatives API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.creatives import rules
from server.models import Creative, CreativeKind, CreativeStatus

Sha256Hex = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[0-9a-f]{64}$")
]

#: firmware_protocol SPEC §4.6: a playlist spot's duration_ms is 1..3600000.
MAX_DURATION_MS = 3_600_000
MAX_TEXT = 2000


class CreativeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: CreativeKind
    #: How long it plays: an image's display time, a video's length.
    duration_ms: int = Field(gt=0, le=MAX_DURATION_MS, examples=[10_000])
    title: str = Field(min_length=1, max_length=200, examples=["雨天出行，就近还伞"])
    #: The text shown on the creative (copy, subtitles).
    body_text: str = Field(default="", max_length=MAX_TEXT)
    #: Any other text on it (read off a video frame, printed on a product).
    declared_text: str = Field(default="", max_length=MAX_TEXT)
    #: The SHA-256 POST /api/v1/ads/media answered for the uploaded file.
    sha256: Sha256Hex


class CheckOut(BaseModel):
    """The automatic check's verdict when it matched."""

    rule: str
    match: str
    message: str


class CreativeOut(BaseModel):
    id: int
    advertiser_id: int
    kind: CreativeKind
    duration_ms: int
    title: str
    body_text: str
    declared_text: str
    media_url: str
    sha256: str
    status: CreativeStatus
    check: CheckOut | None
    review_note: str | None
    reviewed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: Creative) -> CreativeOut:
        return cls(**_fields(c))


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    actor: str
    action: str
    reason: str
    detail: str
    created_at: datetime


class OpsCreativeOut(CreativeOut):
    advertiser_name: str
    reviewed_by: str | None
    audit: list[AuditOut] = Field(default_factory=list)

    @classmethod
    def of_ops(
        cls, c: Creative, advertiser_name: str, audit: list[AuditOut] | None = None
    ) -> OpsCreativeOut:
        return cls(
            **_fields(c),
            advertiser_name=advertiser_name,
            reviewed_by=c.reviewed_by,
            audit=audit or [],
        )


def _fields(c: Creative) -> dict[str, object]:
    check = None
    if c.check_rule is not None:
        match = c.check_match or ""
        check = CheckOut(rule=c.check_rule, match=match, message=rules.message(c.check_rule, match))
    return {
        "id": c.id,
        "advertiser_id": c.advertiser_id,
        "kind": c.kind,
        "duration_ms": c.duration_ms,
        "title": c.title,
        "body_text": c.body_text,
        "declared_text": c.declared_text,
        "media_url": c.media_url,
        "sha256": c.sha256,
        "status": c.status,
        "check": check,
        "review_note": c.review_note,
        "reviewed_at": c.reviewed_at,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


class CreativePage(BaseModel):
    items: list[CreativeOut]
    #: Pass as `before_id` for the next (older) page; None at the end.
    next_before_id: int | None


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: str = Field(default="", max_length=500)
    #: Needed (with a note) to approve a creative that was rejected, by the check or a person.
    override: bool = False


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    #: Shown to the advertiser: what to change.
    note: str = Field(min_length=3, max_length=500)


class MediaOut(BaseModel):
    sha256: str
    #: Where kiosks download it; put `sha256` in the creative.
    url: str
    size: int
    media_type: str
    kind: CreativeKind
