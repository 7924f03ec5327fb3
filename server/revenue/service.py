"""Revenue-share use cases (SPEC §5). Services flush, never commit: the request or the job
run that called them owns the transaction."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from server.config import get_settings
from server.core.clock import clock
from server.core.errors import Conflict, NotFound, Unavailable
from server.core.money import Fen, yuan_str
from server.ledger import service as ledger
from server.models import AuditLog, Partner
from server.models.ledger import EntryKind
from server.models.revenue import PartnerStatement, PartnerStatementLine, StatementStatus
from server.payments.wechatpay import WeChatPayApiError, WeChatPayClient, WeChatPayUnavailable
from server.revenue import repository as repo
from server.revenue import rules
from server.revenue.rules import KioskAmounts, Period, StatementFigures

log = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 200
MAX_LIST_LIMIT = 1000
#: 分账描述 (at most 80 characters at WeChat).
PAYOUT_DESCRIPTION = "Revenue share {start} to {end}"
CSV_HEADER = ("statement_id", "kiosk_id", "ad_revenue_yuan", "forfeited_yuan", "credits_yuan")


class StatementNotFound(NotFound):
    code = "statement_not_found"


class NothingToPay(Conflict):
    code = "nothing_to_pay"


class PayoutAccountMissing(Conflict):
    code = "payout_account_missing"


class PayoutFailed(Conflict):
    """WeChat closed the split (receiver refused, account abnormal): sort it out, then pay
    again; the same out_order_no is kept."""

    code = "payout_failed"


class PayoutUnavailable(Unavailable):
    """WeChat Pay did not answer or asked to retry: nothing recorded here; paying again
    sends the same order, so it can never split twice."""

    code = "payout_unavailable"


@dataclass(frozen=True)
class StatementDetail:
    statement: PartnerStatement
    lines: Sequence[PartnerStatementLine]


# -- issuing ----------------------------------------------------------------------------------


def issue_due_statements(
    session: Session, now: datetime, *, timezone: str | None = None, grace_s: int | None = None
) -> list[PartnerStatement]:
    """State every partner's periods that ended (plus the grace) and are not stated yet.
    Idempotent and safe with several schedulers: a period is stated once (UNIQUE (partner,
    period_start)); a process that loses the race skips that partner this run."""
    settings = get_settings()
    tz = timezone or settings.partner_statement_timezone
    grace = settings.partner_statement_grace_s if grace_s is None else grace_s
    cutoff = rules.local_date(now - timedelta(seconds=grace), tz)
    issued: list[PartnerStatement] = []
    for partner in repo.partners(session):
        issued.extend(_issue_for_partner(session, partner, tz, cutoff, now))
    return issued


def _issue_for_partner(
    session: Session, partner: Partner, tz: str, cutoff: date, now: datetime
) -> list[PartnerStatement]:
    latest = repo.latest_statement(session, partner.id)
    periods = rules.due_periods(
        partner.settlement_cycle,
        first_day=rules.local_date(partner.created_at, tz),
        stated_until=None if latest is None else latest.period_end,
        cutoff=cutoff,
    )
    carried = Fen(0 if latest is None else latest.carried_out_fen)
    issued: list[PartnerStatement] = []
    for period in periods:
        found = compute(session, partner.id, period, tz, partner.revenue_share_bp, carried)
        statement = _statement(partner, period, tz, found, now)
        lines = [
            PartnerStatementLine(
                kiosk_id=line.kiosk_id,
                ad_revenue_fen=line.ad_revenue,
                forfeited_fen=line.forfeited,
                credits_fen=line.credits,
            )
            for line in found.lines
        ]
        if not repo.add_statement(session, statement, lines):
            log.info("partner %s: %s stated by a concurrent run", partner.id, period)
            break
        if found.share > 0:
            statement.out_order_no = rules.out_order_no(statement.id)
            ledger.post_partner_share(
                session,
                EntryKind.PARTNER_SHARE_ACCRUED,
                partner_id=partner.id,
                statement_id=statement.id,
                amount=found.share,
            )
        session.flush()
        issued.append(statement)
        carried = found.carried_out
    return issued


def _statement(
    partner: Partner, period: Period, tz: str, found: StatementFigures, now: datetime
) -> PartnerStatement:
    return PartnerStatement(
        partner_id=partner.id,
        cycle=partner.settlement_cycle,
        period_start=period.start,
        period_end=period.end,
        timezone=tz,
        rate_bp=found.rate_bp,
        ad_revenue_fen=found.ad_revenue,
        forfeited_fen=found.forfeited,
        credits_fen=found.credits,
        carried_in_fen=found.carried_in,
        base_fen=found.base,
        share_fen=found.share,
        carried_out_fen=found.carried_out,
        status=StatementStatus.ISSUED if found.share > 0 else StatementStatus.NOTHING_DUE,
        created_at=now,
    )


def compute(
    session: Session, partner_id: int, period: Period, tz: str, rate_bp: int, carried_in: Fen
) -> StatementFigures:
    """A period's figures from the ledger alone."""
    start, end = period.utc_bounds(tz)
    return rules.figures(repo.kiosk_amounts(session, partner_id, start, end), rate_bp, carried_in)


def recompute(session: Session, statement: PartnerStatement) -> StatementFigures:
    """The statement's figures computed again from the ledger with its own terms (rate,
    time zone, carried-in base): equal to what was stored unless the ledger was changed."""
    return compute(
        session,
        statement.partner_id,
        Period(statement.period_start, statement.period_end),
        statement.timezone,
        statement.rate_bp,
        Fen(statement.carried_in_fen),
    )


def stored_figures(detail: StatementDetail) -> StatementFigures:
    s = detail.statement
    return StatementFigures(
        lines=tuple(
            sorted(
                (
                    KioskAmounts(
                        line.kiosk_id,
                        Fen(line.ad_revenue_fen),
                        Fen(line.forfeited_fen),
                        Fen(line.credits_fen),
                    )
                    for line in detail.lines
                ),
                key=lambda line: line.kiosk_id,
            )
        ),
        rate_bp=s.rate_bp,
        ad_revenue=Fen(s.ad_revenue_fen),
        forfeited=Fen(s.forfeited_fen),
        credits=Fen(s.credits_fen),
        carried_in=Fen(s.carried_in_fen),
        base=Fen(s.base_fen),
        share=Fen(s.share_fen),
        carried_out=Fen(s.carried_out_fen),
    )


# -- reading ----------------------------------------------------------------------------------


def list_statements(
    session: Session, *, partner_id: int | None, limit: int = DEFAULT_LIST_LIMIT
) -> Sequence[PartnerStatement]:
    """A partner's statements (all partners' with None: operators), newest first."""
    return repo.statements(session, partner_id=partner_id, limit=min(limit, MAX_LIST_LIMIT))


def statement_detail(
    session: Session, statement_id: int, *, partner_id: int | None
) -> StatementDetail:
    """One statement with its lines. With `partner_id`, another partner's statement is not
    found (404, so ids do not leak)."""
    found = repo.statement(session, statement_id)
    if found is None or (partner_id is not None and found.partner_id != partner_id):
        raise StatementNotFound(f"no statement {statement_id}", statement_id=statement_id)
    return StatementDetail(found, repo.lines(session, found.id))


def statement_csv(detail: StatementDetail) -> str:
    """One row per kiosk, then the totals, the carried-in base, the base, the rate and the
    share. Amounts in yuan, exact (from fen)."""
    s = detail.statement
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for line in detail.lines:
        writer.writerow(
            [
                s.id,
                line.kiosk_id,
                yuan_str(Fen(line.ad_revenue_fen)),
                yuan_str(Fen(line.forfeited_fen)),
                yuan_str(Fen(line.credits_fen)),
            ]
        )
    writer.writerow(
        [
            s.id,
            "total",
            yuan_str(Fen(s.ad_revenue_fen)),
            yuan_str(Fen(s.forfeited_fen)),
            yuan_str(Fen(s.credits_fen)),
        ]
    )
    writer.writerow([s.id, "carried_in", yuan_str(Fen(s.carried_in_fen)), "", ""])
    writer.writerow([s.id, "base", yuan_str(Fen(s.base_fen)), "", ""])
    writer.writerow([s.id, "rate_bp", s.rate_bp, "", ""])
    writer.writerow([s.id, "share", yuan_str(Fen(s.share_fen)), "", ""])
    return out.getvalue()


# -- paying -----------------------------------------------------------------------------------


def pay_statement(
    session: Session,
    statement_id: int,
    client: WeChatPayClient | None,
    *,
    transaction_id: str,
    actor: str,
) -> PartnerStatement:
    """Pay a statement's share to the partner through profit sharing (分账) on
    `transaction_id`, and record it: ledger `partner_share_paid`, statement paid, audit.

    Idempotent: a paid statement is returned as it is; every attempt sends the same
    out_order_no (derived from the statement id), which WeChat treats as one order, so a
    retry after an error or a lost answer splits nothing twice. The statement row is locked
    for the call, so two operators paying at once make one call after the other."""
    statement = repo.statement(session, statement_id, lock=True)
    if statement is None:
        raise StatementNotFound(f"no statement {statement_id}", statement_id=statement_id)
    if statement.status is StatementStatus.PAID:
        return statement
    if statement.status is StatementStatus.NOTHING_DUE or statement.out_order_no is None:
        raise NothingToPay(
            f"statement {statement_id} has nothing to pay", statement_id=statement_id
        )
    partner = repo.partner(session, statement.partner_id)
    if partner is None or not partner.payout_mchid:
        raise PayoutAccountMissing(
            f"partner {statement.partner_id} has no payout merchant id (PATCH the partner)",
            partner_id=statement.partner_id,
        )
    if client is None:
        raise PayoutUnavailable("WeChat Pay is not configured")
    receiver = {
        "type": "MERCHANT_ID",
        "account": partner.payout_mchid,
        "amount": statement.share_fen,
        "description": PAYOUT_DESCRIPTION.format(
            start=statement.period_start.isoformat(), end=statement.period_end.isoformat()
        ),
    }
    try:
        answer = client.profit_sharing_order(
            out_order_no=statement.out_order_no,
            transaction_id=transaction_id,
            receivers=[receiver],
            unfreeze_unsplit=False,
        )
    except WeChatPayUnavailable as exc:
        raise PayoutUnavailable(str(exc), statement_id=statement_id) from exc
    except WeChatPayApiError as exc:
        if exc.retryable:
            raise PayoutUnavailable(str(exc), statement_id=statement_id, code=exc.code) from exc
        raise PayoutFailed(
            f"WeChat Pay refused the split: {exc.code} {exc.message}",
            statement_id=statement_id,
            code=exc.code,
        ) from exc
    statement.payout_transaction_id = transaction_id
    statement.payout_order_id = str(answer.get("order_id", "")) or None
    result = _receiver_result(answer, partner.payout_mchid)
    if result == "CLOSED":
        raise PayoutFailed(
            f"WeChat Pay closed the split to {partner.payout_mchid}",
            statement_id=statement_id,
            out_order_no=statement.out_order_no,
        )
    if answer.get("state") != "FINISHED" or result != "SUCCESS":
        # Accepted, still processing at WeChat: paying again asks for the same order.
        session.flush()
        return statement
    now = clock.now()
    ledger.post_partner_share(
        session,
        EntryKind.PARTNER_SHARE_PAID,
        partner_id=statement.partner_id,
        statement_id=statement.id,
        amount=Fen(statement.share_fen),
    )
    statement.status = StatementStatus.PAID
    statement.paid_at = now
    session.add(
        AuditLog(
            actor=actor[:64],
            action="partner_statement.paid",
            subject=f"partner_statement:{statement.id}",
            reason=f"profit sharing {statement.out_order_no}",
            detail=(
                f"partner {statement.partner_id}, {statement.share_fen} fen to "
                f"{partner.payout_mchid}, order {statement.payout_order_id}, "
                f"transaction {transaction_id}"
            ),
            created_at=now,
        )
    )
    session.flush()
    return statement


def _receiver_result(answer: dict[str, Any], account: str) -> str | None:
    for receiver in answer.get("receivers") or ():
        if isinstance(receiver, dict) and receiver.get("account") == account:
            return str(receiver.get("result"))
    return None
