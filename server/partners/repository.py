from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Partner


def by_name(session: Session, name: str) -> Partner | None:
    return session.scalars(select(Partner).where(Partner.name == name)).first()


def list_all(session: Session, *, region: str | None = None) -> Sequence[Partner]:
    stmt = select(Partner).order_by(Partner.id)
    if region is not None:
        stmt = stmt.where(Partner.region == region)
    return session.scalars(stmt).all()
