"""Partner use cases. Services flush, never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from server.core.clock import clock
from server.core.errors import Conflict, NotFound
from server.models import AuditLog, Partner
from server.models.partner import SettlementCycle
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


def update_terms(
    session: Session,
    partner_id: int,
    *,
    actor: str,
    revenue_share_bp: int | None = None,
    settlement_cycle: SettlementCycle | None = None,
    payout_mchid: str | None = None,
) -> Partner:
    """Change a partner's revenue-share terms (operators), audit-logged with the old and new
    values. A new rate or cycle applies to statements issued from now on; issued statements
    keep the terms they were computed with."""
    partner = get_partner(session, partner_id)
    changes: list[str] = []
    if revenue_share_bp is not None and revenue_share_bp != partner.revenue_share_bp:
        changes.append(f"revenue_share_bp {partner.revenue_share_bp} -> {revenue_share_bp}")
        partner.revenue_share_bp = revenue_share_bp
    if settlement_cycle is not None and settlement_cycle is not partner.settlement_cycle:
        changes.append(f"settlement_cycle {partner.settlement_cycle} -> {settlement_cycle}")
        partner.settlement_cycle = settlement_cycle
    if payout_mchid is not None and payout_mchid != partner.payout_mchid:
        changes.append(f"payout_mchid {partner.payout_mchid} -> {payout_mchid}")
        partner.payout_mchid = payout_mchid
    if changes:
        session.add(
            AuditLog(
                actor=actor[:64],
                action="partner.terms_changed",
                subject=f"partner:{partner.id}",
                reason="revenue-share terms",
                detail="; ".join(changes),
                created_at=clock.now(),
            )
        )
        session.flush()
    return partner


def list_partners(session: Session, *, region: str | None = None) -> Sequence[Partner]:
    return repo.list_all(session, region=region)


def find_or_register(session: Session, *, name: str, region: str) -> Partner:
    """The partner of that name, registered first if new (seeding and demos)."""
    return repo.by_name(session, name) or register_partner(session, name=name, region=region)
