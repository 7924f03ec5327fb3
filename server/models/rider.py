"""Riders and their login sessions (SPEC §2, Login)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import ID, Base


class Rider(Base):
    """A mini-program user, known by the openid WeChat gives for our appid."""

    __tablename__ = "riders"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class RiderSession(Base):
    """One login. Only the SHA-256 of our opaque token is stored, so a database leak does not
    hand out sessions; WeChat's `session_key` stays here and never goes to the client."""

    __tablename__ = "rider_sessions"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    rider_id: Mapped[int] = mapped_column(ForeignKey("riders.id"), index=True)
    session_key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
