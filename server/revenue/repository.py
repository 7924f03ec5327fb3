"""Every revenue-share query. A statement's amounts are read from the ledger alone: ad
revenue and credits from the postings' `kiosk_id`, forfeited deposits from the entries'
`rental:<id>` reference (the rental names the kiosk it was rented from)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import String, case, cast, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.core.money import Fen
from server.ledger.rules import REVENUE_ADS, REVENUE_ADS_CREDITS, REVENUE_FORFEITED_DEPOSITS
from server.models import JournalEntry, Kiosk, Partner, Posting, Rental
from server.models.revenue import PartnerStatement, PartnerStatementLine
from server.revenue.rules import KioskAmounts


def kiosk_amounts(
    session: Session, partner_id: int, start: datetime, end: datetime
) -> list[KioskAmounts]:
    """Each of the partner's kiosks' ad revenue, forfeited deposits (net of reversals) and
    ad credits posted in [start, end), from the ledger."""
    ads = (
        select(
            Posting.kiosk_id,
            func.coalesce(
                func.sum(case((Posting.account_code == REVENUE_ADS, -Posting.amount_fen))), 0
            ),
            func.coalesce(
                func.sum(case((Posting.account_code == REVENUE_ADS_CREDITS, Posting.amount_fen))),
                0,
            ),
        )
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(Kiosk, Kiosk.id == Posting.kiosk_id)
        .where(
            Kiosk.partner_id == partner_id,
            Posting.account_code.in_((REVENUE_ADS, REVENUE_ADS_CREDITS)),
            JournalEntry.created_at >= start,
            JournalEntry.created_at < end,
        )
        .group_by(Posting.kiosk_id)
    )
    forfeited = (
        select(Rental.kiosk_id, func.sum(-Posting.amount_fen))
        .select_from(Rental)
        .join(Kiosk, Kiosk.id == Rental.kiosk_id)
        .join(
            JournalEntry,
            JournalEntry.reference == literal("rental:") + cast(Rental.id, String),
        )
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .where(
            Kiosk.partner_id == partner_id,
            Posting.account_code == REVENUE_FORFEITED_DEPOSITS,
            JournalEntry.created_at >= start,
            JournalEntry.created_at < end,
        )
        .group_by(Rental.kiosk_id)
    )
    found: dict[str, list[int]] = {}
    for kiosk_id, ad, credit in session.execute(ads):
        amounts = found.setdefault(str(kiosk_id), [0, 0, 0])
        amounts[0], amounts[2] = int(ad), int(credit)
    for kiosk_id, fen in session.execute(forfeited):
        found.setdefault(str(kiosk_id), [0, 0, 0])[1] = int(fen)
    return [
        KioskAmounts(kiosk_id=k, ad_revenue=Fen(a), forfeited=Fen(f), credits=Fen(c))
        for k, (a, f, c) in found.items()
    ]


def partners(session: Session) -> Sequence[Partner]:
    return session.scalars(select(Partner).order_by(Partner.id)).all()


def partner(session: Session, partner_id: int) -> Partner | None:
    return session.get(Partner, partner_id)


def latest_statement(session: Session, partner_id: int) -> PartnerStatement | None:
    return session.scalars(
        select(PartnerStatement)
        .where(PartnerStatement.partner_id == partner_id)
        .order_by(PartnerStatement.period_start.desc())
        .limit(1)
    ).first()


def add_statement(
    session: Session, statement: PartnerStatement, lines: Sequence[PartnerStatementLine]
) -> bool:
    """Insert a statement and its lines in a savepoint; False when the UNIQUE (partner,
    period_start) says another process stated the period first (nothing written)."""
    session.flush()
    try:
        with session.begin_nested():
            session.add(statement)
            session.flush()
            for line in lines:
                line.statement_id = statement.id
            session.add_all(lines)
            session.flush()
    except IntegrityError:
        exists = session.scalar(
            select(func.count())
            .select_from(PartnerStatement)
            .where(
                PartnerStatement.partner_id == statement.partner_id,
                PartnerStatement.period_start == statement.period_start,
            )
        )
        if exists:
            return False
        raise
    return True


def statements(
    session: Session, *, partner_id: int | None, limit: int
) -> Sequence[PartnerStatement]:
    stmt = select(PartnerStatement).order_by(
        PartnerStatement.period_start.desc(), PartnerStatement.id.desc()
    )
    if partner_id is not None:
        stmt = stmt.where(PartnerStatement.partner_id == partner_id)
    return session.scalars(stmt.limit(limit)).all()


def statement(
    session: Session, statement_id: int, *, lock: bool = False
) -> PartnerStatement | None:
    stmt = select(PartnerStatement).where(PartnerStatement.id == statement_id)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()


def lines(session: Session, statement_id: int) -> Sequence[PartnerStatementLine]:
    return session.scalars(
        select(PartnerStatementLine)
        .where(PartnerStatementLine.statement_id == statement_id)
        .order_by(PartnerStatementLine.kiosk_id)
    ).all()
