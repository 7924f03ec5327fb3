from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Rider, RiderSession


def by_openid(session: Session, openid: str) -> Rider | None:
    return session.scalars(select(Rider).where(Rider.openid == openid)).first()


def rider_of_live_session(session: Session, token_hash: str, now: datetime) -> Rider | None:
    """The rider whose session token hashes to `token_hash` and has not expired, in one
    statement (every rider request asks it)."""
    return session.scalars(
        select(Rider)
        .join(RiderSession, RiderSession.rider_id == Rider.id)
        .where(RiderSession.token_hash == token_hash, RiderSession.expires_at > now)
    ).first()
