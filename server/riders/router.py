"""HTTP only: /api/v1/riders, and the rider bearer-token dependency other routers use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from server.config import Settings
from server.core.errors import Unavailable
from server.core.http import SessionDep, services
from server.deposits import service as deposits
from server.models import Rider
from server.rentals import service as rentals
from server.rentals.schemas import RentalOut
from server.riders import service
from server.riders.schemas import DepositOut, LoginIn, LoginOut, RiderMeOut
from server.wechat.miniprogram import MiniProgramClient

router = APIRouter(prefix="/api/v1/riders", tags=["riders"])


def current_rider(
    session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> Rider:
    """`Authorization: Bearer <token>` from POST /riders/login; 401 when missing or expired."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return service.authenticate(session, token.strip() if scheme.lower() == "bearer" else "")


RiderDep = Annotated[Rider, Depends(current_rider)]


def current_rider_own_tx(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Rider:
    """`current_rider` as a read of its own (`Database.read`: one statement, no transaction
    on PostgreSQL), done before the endpoint runs: for endpoints that run their own units of
    work (rent, withdraw) and must not hold a request session while they wait for SQLite's
    write lock."""
    with services(request).db.read() as session:
        return current_rider(session, authorization)


RiderOwnTxDep = Annotated[Rider, Depends(current_rider_own_tx)]


def wechat_client(request: Request) -> MiniProgramClient:
    client = services(request).wechat
    if client is None:
        raise Unavailable("WeChat login is not configured on this server")
    return client


def settings_of(request: Request) -> Settings:
    return services(request).settings


@router.post("/login", summary="Log in with a wx.login code")
def login(
    body: LoginIn,
    session: SessionDep,
    wechat: Annotated[MiniProgramClient, Depends(wechat_client)],
    settings: Annotated[Settings, Depends(settings_of)],
) -> LoginOut:
    issued = service.login(session, wechat, body.code, settings.rider_token_ttl_s)
    return LoginOut(token=issued.token, expires_at=issued.expires_at, rider_id=issued.rider.id)


@router.get("/me", summary="The rider, the deposit, and the umbrella they have")
def me(rider: RiderDep, session: SessionDep) -> RiderMeOut:
    state = deposits.deposit_state(session, rider)
    payment = state.payment
    refund = state.refund
    rental = rentals.current_rental(session, rider.id)
    return RiderMeOut(
        current_rental=None if rental is None else RentalOut.model_validate(rental),
        rider_id=rider.id,
        created_at=rider.created_at,
        deposit=DepositOut(
            state=state.state,
            amount_fen=payment.amount_fen if payment else 0,
            held_fen=state.held_fen,
            payment_id=payment.id if payment else None,
            out_trade_no=payment.out_trade_no if payment else None,
            paid_at=payment.paid_at if payment else None,
            refund_status=None if refund is None else refund.status.value,
            out_refund_no=None if refund is None else refund.out_refund_no,
        ),
    )
