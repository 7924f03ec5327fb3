"""Accounts use cases: register advertisers and users, log in, authenticate a token."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.accounts import repository as repo
from server.accounts import rules
from server.accounts.rules import Principal
from server.core.clock import clock
from server.core.errors import Conflict, DomainError, NotFound
from server.core.http import Unauthorized
from server.models import (
    Advertiser,
    AuditLog,
    BillingMode,
    LostSpotPolicy,
    Partner,
    Role,
    User,
    UserSession,
)


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime
    principal: Principal


def principal_of(user: User) -> Principal:
    return Principal(
        role=user.role,
        user_id=user.id,
        login=user.login,
        advertiser_id=user.advertiser_id,
        partner_id=user.partner_id,
    )


def record_change(
    session: Session, actor: Principal, action: str, subject: str, detail: str, reason: str = ""
) -> AuditLog:
    """One audit_log row for a change made over the API (issue 5: everything operators
    change is in an audit log), in the caller's transaction. The actor is the user's login
    (`operator-token` for the shared token). Never put secrets in `detail`."""
    entry = AuditLog(
        actor=actor.login[:64],
        action=action[:64],
        subject=subject[:128],
        reason=reason[:500],
        detail=detail[:2000],
        created_at=clock.now(),
    )
    session.add(entry)
    session.flush()
    return entry


def register_advertiser(
    session: Session, *, name: str, billing_mode: BillingMode, lost_spot_policy: LostSpotPolicy
) -> Advertiser:
    if repo.advertiser_by_name(session, name) is not None:
        raise Conflict(f"an advertiser named {name!r} exists", name=name)
    advertiser = Advertiser(
        name=name,
        billing_mode=billing_mode,
        lost_spot_policy=lost_spot_policy,
        created_at=clock.now(),
    )
    session.add(advertiser)
    session.flush()
    return advertiser


def create_user(
    session: Session,
    *,
    login: str,
    password: str,
    role: Role,
    display_name: str = "",
    advertiser_id: int | None = None,
    partner_id: int | None = None,
) -> User:
    if role is Role.ADVERTISER and (
        advertiser_id is None or session.get(Advertiser, advertiser_id) is None
    ):
        raise NotFound(f"advertiser {advertiser_id} does not exist", advertiser_id=advertiser_id)
    if role is Role.PARTNER and (partner_id is None or session.get(Partner, partner_id) is None):
        raise NotFound(f"partner {partner_id} does not exist", partner_id=partner_id)
    if role is Role.OPERATOR and (advertiser_id is not None or partner_id is not None):
        raise DomainError("an operator belongs to no advertiser or partner")
    user = User(
        login=login,
        display_name=display_name or login,
        password_hash=rules.hash_password(password),
        role=role,
        advertiser_id=advertiser_id if role is Role.ADVERTISER else None,
        partner_id=partner_id if role is Role.PARTNER else None,
        created_at=clock.now(),
    )
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        raise Conflict(f"login {login!r} is taken", login=login) from exc
    return user


def login(session: Session, login: str, password: str, ttl_s: int) -> IssuedToken:
    user = repo.user_by_login(session, login)
    # Verify even for an unknown login, so timing does not tell which logins exist.
    stored = user.password_hash if user is not None else _DUMMY_HASH
    if not rules.verify_password(password, stored) or user is None:
        raise Unauthorized("wrong login or password")
    now = clock.now()
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=ttl_s)
    session.add(
        UserSession(
            token_hash=rules.hash_token(token),
            user_id=user.id,
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    return IssuedToken(token=token, expires_at=expires_at, principal=principal_of(user))


def authenticate(session: Session, token: str) -> Principal:
    if not token:
        raise Unauthorized("login required (Authorization: Bearer <token>)")
    user = repo.live_session_user(session, rules.hash_token(token), clock.now())
    if user is None:
        raise Unauthorized("token unknown or expired; log in again")
    return principal_of(user)


_DUMMY_HASH = rules.hash_password("not a password", salt=b"\0" * 16)
