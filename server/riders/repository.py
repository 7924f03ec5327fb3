from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Rider, RiderSession


def by_openid(session: Session, openid: str) -> Rider | None:
    return session.scalars(select(Rider).where(Rider.openid == openid)).first()


def live_session(session: Session, token_hash: str, now: datetime) -> RiderSession | None:
    return session.scalars(
        select(RiderSession).where(
            RiderSession.token_hash == token_hash, RiderSession.expires_at > now
        )
    ).first()
