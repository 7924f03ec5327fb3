"""Rider login (SPEC §2): exchange the `wx.login` code, issue our own opaque token.

Services flush, never commit."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.core.clock import clock
from server.core.http import Unauthorized
from server.models import Rider, RiderSession
from server.riders import repository as repo
from server.wechat.miniprogram import MiniProgramClient


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    rider: Rider


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login(session: Session, wechat: MiniProgramClient, code: str, ttl_s: int) -> IssuedToken:
    """code2session, then find or register the rider by openid and open a session.

    WeChat's refusals are `WeChatError`s (DomainErrors) and reach the client as such.
    The token itself is returned once and only its hash is stored."""
    wx = wechat.code2session(code)
    rider = find_or_register(session, wx.openid)
    now = clock.now()
    token = secrets.token_urlsafe(32)
    expires_at = now + timedelta(seconds=ttl_s)
    session.add(
        RiderSession(
            token_hash=hash_token(token),
            rider_id=rider.id,
            session_key=wx.session_key,
            created_at=now,
            expires_at=expires_at,
        )
    )
    session.flush()
    return IssuedToken(token=token, expires_at=expires_at, rider=rider)


def find_or_register(session: Session, openid: str) -> Rider:
    rider = repo.by_openid(session, openid)
    if rider is not None:
        return rider
    try:
        # A first login racing with another of the same user: the UNIQUE openid decides,
        # and only this savepoint is rolled back.
        with session.begin_nested():
            rider = Rider(openid=openid, created_at=clock.now())
            session.add(rider)
    except IntegrityError:
        rider = repo.by_openid(session, openid)
        if rider is None:
            raise
    return rider


def authenticate(session: Session, token: str) -> Rider:
    """The rider of a live session token; `Unauthorized` for an unknown or expired one."""
    if not token:
        raise Unauthorized("rider token required (Authorization: Bearer <token>)")
    rider = repo.rider_of_live_session(session, hash_token(token), clock.now())
    if rider is None:
        raise Unauthorized("rider token unknown or expired; log in again")
    return rider
