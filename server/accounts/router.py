"""HTTP only: /api/v1/auth, /api/v1/advertisers, /api/v1/users, and the dependencies every
tenant-scoped router uses (`PrincipalDep`, `AdvertiserDep`, `OperatorDep`)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, status
from sqlalchemy.orm import Session

from server.accounts import repository as repo
from server.accounts import rules, service
from server.accounts.rules import Principal
from server.accounts.schemas import (
    AdvertiserCreate,
    AdvertiserOut,
    LoginIn,
    LoginOut,
    MeOut,
    UserCreate,
    UserOut,
)
from server.accounts.service import Forbidden
from server.core.http import SessionDep, services
from server.models import Role


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _principal_of_token(request: Request, session: Session, token: str) -> Principal:
    operator_token = services(request).settings.operator_token
    if operator_token and token and hmac.compare_digest(token.encode(), operator_token.encode()):
        return rules.OPERATOR_TOKEN_PRINCIPAL
    return service.authenticate(session, token)


def current_principal(
    request: Request, session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """A user's token from POST /auth/login, or the shared operator token of the settings."""
    return _principal_of_token(request, session, _bearer(authorization))


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def current_operator(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """An operator user or the operator token. Without an operator token in the settings
    and without credentials (the embedded demo), operator endpoints stay open.

    The token is looked up in a short transaction of its own, not the request's session:
    some operator endpoints wait for a kiosk (commands) and must not hold SQLite's write
    lock meanwhile."""
    if not authorization and not services(request).settings.operator_token:
        return rules.OPERATOR_TOKEN_PRINCIPAL
    with services(request).db.transaction() as session:
        principal = _principal_of_token(request, session, _bearer(authorization))
    if not principal.is_operator:
        raise Forbidden("operators only")
    return principal


OperatorDep = Annotated[Principal, Depends(current_operator)]


def current_advertiser(principal: PrincipalDep) -> Principal:
    """An advertiser's user; everything they reach is scoped to `principal.advertiser_id`."""
    if principal.role is not Role.ADVERTISER or principal.advertiser_id is None:
        raise Forbidden("advertiser accounts only")
    return principal


AdvertiserDep = Annotated[Principal, Depends(current_advertiser)]


router = APIRouter(prefix="/api/v1", tags=["accounts"])


def _me(p: Principal) -> MeOut:
    return MeOut(
        role=p.role,
        user_id=p.user_id,
        login=p.login,
        advertiser_id=p.advertiser_id,
        partner_id=p.partner_id,
    )


@router.post("/auth/login", summary="Log in with login and password; returns a bearer token")
def login(body: LoginIn, request: Request, session: SessionDep) -> LoginOut:
    issued = service.login(
        session, body.login, body.password, services(request).settings.user_token_ttl_s
    )
    return LoginOut(
        **_me(issued.principal).model_dump(), token=issued.token, expires_at=issued.expires_at
    )


@router.get("/auth/me", summary="Who the token belongs to")
def me(principal: PrincipalDep) -> MeOut:
    return _me(principal)


@router.post(
    "/advertisers",
    status_code=status.HTTP_201_CREATED,
    summary="Register an advertiser with its first user (operators)",
)
def create_advertiser(
    body: AdvertiserCreate, session: SessionDep, operator: OperatorDep
) -> AdvertiserOut:
    advertiser = service.register_advertiser(
        session,
        name=body.name,
        billing_mode=body.billing_mode,
        lost_spot_policy=body.lost_spot_policy,
    )
    user = service.create_user(
        session,
        login=body.admin_login,
        password=body.admin_password,
        role=Role.ADVERTISER,
        advertiser_id=advertiser.id,
    )
    service.record_change(
        session,
        operator,
        "advertiser.register",
        f"advertiser:{advertiser.id}",
        f"name {advertiser.name!r}, billing {advertiser.billing_mode.value}, "
        f"first user {user.login!r} (user:{user.id})",
    )
    return AdvertiserOut.model_validate(advertiser)


@router.get("/advertisers", summary="List advertisers (operators)")
def list_advertisers(session: SessionDep, _: OperatorDep) -> list[AdvertiserOut]:
    return [AdvertiserOut.model_validate(a) for a in repo.list_advertisers(session)]


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    summary="Create a user: an operator, or one of a partner's or an advertiser's staff",
)
def create_user(body: UserCreate, session: SessionDep, principal: PrincipalDep) -> UserOut:
    # Operators create anyone; an advertiser's user may add colleagues to its own account.
    own_colleague = (
        principal.role is Role.ADVERTISER
        and body.role is Role.ADVERTISER
        and body.advertiser_id == principal.advertiser_id
    )
    if not (principal.is_operator or own_colleague):
        raise Forbidden("only operators, or an advertiser's users for their own advertiser")
    user = service.create_user(
        session,
        login=body.login,
        password=body.password,
        role=body.role,
        display_name=body.display_name,
        advertiser_id=body.advertiser_id,
        partner_id=body.partner_id,
    )
    tenant = (f", advertiser:{user.advertiser_id}" if user.advertiser_id is not None else "") + (
        f", partner:{user.partner_id}" if user.partner_id is not None else ""
    )
    service.record_change(
        session,
        principal,
        "user.create",
        f"user:{user.id}",
        f"login {user.login!r}, role {user.role.value}{tenant}",
    )
    return UserOut.model_validate(user)
