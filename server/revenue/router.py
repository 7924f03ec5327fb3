"""HTTP only: /api/v1/partner/statements (partners see their own, operators all) and
/api/v1/ops/partner-statements/{id}/pay (operators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse

from server.accounts.router import OperatorDep, PrincipalDep
from server.accounts.rules import Principal
from server.accounts.service import Forbidden
from server.core.http import SessionDep, services
from server.models import Role
from server.revenue import service
from server.revenue.schemas import StatementDetailOut, StatementLineOut, StatementOut

router = APIRouter(prefix="/api/v1", tags=["revenue share"])


def _scope(principal: Principal, partner_id: int | None = None) -> int | None:
    """The partner whose statements the caller may see: its own for a partner user, the
    asked one (or all: None) for operators."""
    if principal.is_operator:
        return partner_id
    if principal.role is Role.PARTNER and principal.partner_id is not None:
        return principal.partner_id
    raise Forbidden("partner and operator accounts only")


def _detail(detail: service.StatementDetail) -> StatementDetailOut:
    return StatementDetailOut(
        **StatementOut.model_validate(detail.statement).model_dump(),
        lines=[StatementLineOut.model_validate(line) for line in detail.lines],
    )


@router.get("/partner/statements", summary="Revenue-share statements, newest first")
def list_statements(
    session: SessionDep,
    principal: PrincipalDep,
    partner_id: Annotated[int | None, Query(description="operators: one partner's")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIST_LIMIT)] = service.DEFAULT_LIST_LIMIT,
) -> list[StatementOut]:
    found = service.list_statements(session, partner_id=_scope(principal, partner_id), limit=limit)
    return [StatementOut.model_validate(s) for s in found]


# Before "/{statement_id}", which would otherwise take "12.csv" and refuse it as no integer.
@router.get(
    "/partner/statements/{statement_id}.csv",
    response_class=PlainTextResponse,
    summary="A statement as CSV",
)
def statement_csv(
    statement_id: int, session: SessionDep, principal: PrincipalDep
) -> PlainTextResponse:
    detail = service.statement_detail(session, statement_id, partner_id=_scope(principal))
    return PlainTextResponse(
        service.statement_csv(detail),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="partner-statement-{statement_id}.csv"'
        },
    )


@router.get("/partner/statements/{statement_id}", summary="A statement with its kiosk lines")
def get_statement(
    statement_id: int, session: SessionDep, principal: PrincipalDep
) -> StatementDetailOut:
    return _detail(service.statement_detail(session, statement_id, partner_id=_scope(principal)))


@router.post(
    "/ops/partner-statements/{statement_id}/pay",
    summary="Pay a statement's share through WeChat Pay profit sharing (operators; idempotent)",
)
def pay_statement(
    statement_id: int, request: Request, session: SessionDep, operator: OperatorDep
) -> StatementOut:
    svc = services(request)
    statement = service.pay_statement(
        session,
        statement_id,
        svc.wechatpay,
        transaction_id=svc.settings.wechatpay_profit_sharing_transaction_id,
        actor=operator.login,
    )
    return StatementOut.model_validate(statement)
