"""Partner use cases. Services flush, never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from server.core.clock import clock
from server.core.errors import Conflict, NotFound
from server.models import Partner
from server.partners import repository as repo


def register_partner(session: Session, *, name: str, region: str) -> Partner:
    if repo.by_name(session, name) is not None:
        raise Conflict(f"partner {name!r} already exists", name=name)
    partner = Partner(name=name, region=region, created_at=clock.now())
    session.add(partner)
    session.flush()
    return partner


def get_partner(session: Session, partner_id: int) -> Partner:
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise NotFound(f"partner {partner_id} does not exist", partner_id=partner_id)
    return partner


def list_partners(session: Session, *, region: str | None = None) -> Sequence[Partner]:
    return repo.list_all(session, region=region)


def find_or_register(session: Session, *, name: str, region: str) -> Partner:
    """The partner of that name, registered first if new (seeding and demos)."""
    return repo.by_name(session, name) or register_partner(session, name=name, region=region)
