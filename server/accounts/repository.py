"""Every accounts query."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Advertiser, User, UserSession


def user_by_login(session: Session, login: str) -> User | None:
    return session.scalars(select(User).where(User.login == login)).one_or_none()


def live_session_user(session: Session, token_hash: str, now: datetime) -> User | None:
    return session.scalars(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.token_hash == token_hash, UserSession.expires_at > now)
    ).one_or_none()


def advertiser_by_name(session: Session, name: str) -> Advertiser | None:
    return session.scalars(select(Advertiser).where(Advertiser.name == name)).one_or_none()


def list_advertisers(session: Session) -> list[Advertiser]:
    return list(session.scalars(select(Advertiser).order_by(Advertiser.id)))


def users_of_advertiser(session: Session, advertiser_id: int) -> list[User]:
    return list(
        session.scalars(select(User).where(User.advertiser_id == advertiser_id).order_by(User.id))
    )
