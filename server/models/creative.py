"""Advertisers' creatives and their review (SPEC §4 Creatives). The price-advertising
check itself is `server/creatives/rules.py`."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base, enum_values


class CreativeKind(enum.StrEnum):
    IMAGE = "image"
    VIDEO = "video"


class CreativeStatus(enum.StrEnum):
    """`pending` passed the automatic check and waits for a person; `rejected` by the check
    (`check_rule` says which rule matched) or by a person (`review_note`); only `approved`
    creatives are ever put in a playlist."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Creative(Base):
    __tablename__ = "creatives"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    advertiser_id: Mapped[int] = mapped_column(ForeignKey("advertisers.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    #: Text shown on the creative (copy, subtitles), as the advertiser typed it.
    body_text: Mapped[str] = mapped_column(Text, default="")
    #: Any other text the advertiser declares is on it (e.g. read off a video frame).
    declared_text: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[CreativeKind] = mapped_column(
        Enum(CreativeKind, native_enum=False, length=8, values_callable=enum_values)
    )
    duration_ms: Mapped[int] = mapped_column(Integer)
    media_url: Mapped[str] = mapped_column(String(1024))
    #: SHA-256 of the media file, lowercase hex; the kiosk checks it after download.
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[CreativeStatus] = mapped_column(
        Enum(CreativeStatus, native_enum=False, length=16, values_callable=enum_values), index=True
    )
    #: The automatic check's verdict: the rule id that matched and the text it matched.
    check_rule: Mapped[str | None] = mapped_column(String(64))
    check_match: Mapped[str | None] = mapped_column(String(200))
    review_note: Mapped[str | None] = mapped_column(String(500))
    reviewed_by: Mapped[str | None] = mapped_column(String(120))
    reviewed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
