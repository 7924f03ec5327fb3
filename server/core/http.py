"""The HTTP edge shared by every router: error mapping and request dependencies.

- `DomainError` -> `{"error": code, "message": ..., "details": {...}}` with its status code.
- Request validation -> 422 `{"error": "invalid_request", "message": "<field>: <why>; ...",
  "details": [...]}`: one readable sentence plus pydantic's list for programs.
- `db_session`: one transaction per request (CONVENTIONS: transactions belong to the edge),
  committed after the handler returns, rolled back if it raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from server.core.errors import DomainError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from collections.abc import Callable

    from server.config import Settings
    from server.core.db import Database
    from server.payments.wechatpay import WeChatPayClient
    from server.wechat.miniprogram import MiniProgramClient


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


@dataclass
class AppServices:
    """Everything a request may need, built once per app (app.state.services).

    The lead attaches the cross-process pieces here (shared state, MQTT publisher, command
    channel) through `create_app(..., services=...)` or a lifespan hook; routers read them
    with `services(request)`.
    """

    settings: Settings
    db: Database
    shared_state: Any = None
    publisher: Any = None
    commands: Any = None
    #: Called (in a background task, after the commit) when kiosk credentials changed:
    #: rewrite the broker files and reload the broker. None = nobody to tell.
    broker_sync: Callable[[], None] | None = None
    #: WeChat mini-program API (login) and WeChat Pay clients; None = not configured
    #: (`server.runtime.wechat_hooks` builds them from settings, tests from a stand-in).
    wechat: MiniProgramClient | None = None
    wechatpay: WeChatPayClient | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def services(request: Request) -> AppServices:
    svc: AppServices = request.app.state.services
    return svc


def db_session(request: Request) -> Iterator[Session]:
    # A request that may write reads first (authentication, idempotency lookups): on SQLite
    # it takes the write lock at BEGIN and waits for it (core/db.py), instead of failing
    # with "database is locked" when the bridge commits in between. Endpoints that run
    # their own units of work (rent, withdraw) must not hold this session: they
    # authenticate with `riders.router.RiderOwnTxDep`.
    writes = request.method not in ("GET", "HEAD", "OPTIONS")
    with services(request).db.transaction(immediate=writes) as session:
        yield session


#: `scope="function"`: commit (or roll back) when the handler returns, *before* the response
#: is sent. FastAPI's default ("request") would commit after sending, so a client could get
#: a 201 for a transaction that then fails, and background tasks would run before the commit.
SessionDep = Annotated[Session, Depends(db_session, scope="function")]


def _validation_message(errors: Any) -> str:
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc) or 'request'}: {msg}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.code, "message": exc.message}
        if exc.details:
            body["details"] = jsonable_encoder(exc.details)
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # The pool found a dead connection (the database restarted or dropped it): this
        # unit of work rolled back and every older pooled connection is already invalidated
        # (core/db.py), so the same request succeeds when retried.
        if not exc.connection_invalidated:
            raise exc
        log.warning("%s %s: database connection lost: %s", request.method, request.url.path, exc)
        body = {
            "error": "database_unavailable",
            "message": "the database connection was lost; retry the request (with the same "
            "Idempotency-Key where it takes one)",
        }
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        body = {
            "error": "invalid_request",
            "message": _validation_message(errors),
            "details": jsonable_encoder(errors, exclude={"ctx", "url", "input"}),
        }
        return JSONResponse(body, status_code=422)
