"""create_app() and the lifespan that opens and closes connections.

    app = create_app()                         # settings from UMB_* env, own Database
    app = create_app(settings, db=database)    # tests: a Database the caller owns
    app = create_app(settings, hooks=[attach_bridge_pieces])

A hook is `(AppServices) -> AsyncContextManager[None]`: entered in order at startup after
the database is open, exited in reverse at shutdown. That is where the shared state, the
MQTT publisher and the command channel get attached to `app.state.services`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

from anyio import to_thread
from fastapi import FastAPI

from server.accounts.router import router as accounts_router
from server.alerts.router import router as alerts_router
from server.billing.router import router as billing_router
from server.bookings.router import router as bookings_router
from server.config import Settings, get_settings
from server.console.router import router as console_router
from server.core.db import Database
from server.core.http import AppServices, install_error_handlers
from server.creatives.router import router as creatives_router
from server.dashboard.router import router as dashboard_router
from server.delivery.router import router as delivery_router
from server.deposits.router import router as deposits_router
from server.gbfs.router import router as gbfs_router
from server.kiosk_state.router import router as uplinks_router
from server.kiosks import service as kiosk_service
from server.kiosks.router import router as kiosks_router
from server.notifications.router import router as notifications_router
from server.partners.router import router as partners_router
from server.playlists.router import router as playlists_router
from server.rebalancing.router import router as rebalancing_router
from server.rentals.router import ops as ops_router
from server.rentals.router import router as rentals_router
from server.revenue.router import router as revenue_router
from server.riders.router import router as riders_router

Hook = Callable[[AppServices], AbstractAsyncContextManager[None]]


def make_broker_sync(
    db: Database, settings: Settings, *, pid_file: Path | None = None
) -> Callable[[], None]:
    """A `broker_sync` that rewrites the broker files from the registry (own transaction)
    and SIGHUPs Mosquitto when `pid_file` is given (the embedded broker rereads by itself)."""

    def sync() -> None:
        with db.transaction() as session:
            kiosk_service.export_broker_files(session, settings, pid_file=pid_file)

    return sync


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    services: AppServices | None = None,
    hooks: Sequence[Hook] = (),
) -> FastAPI:
    settings = settings or (services.settings if services else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = services
        own_db: Database | None = None
        if svc is None:
            database = db
            if database is None:
                database = own_db = Database(settings.db_url)
            svc = AppServices(settings=settings, db=database)
        app.state.services = svc
        # A rent waits for its kiosk in a worker thread: size the pool for concurrent riders.
        to_thread.current_default_thread_limiter().total_tokens = settings.api_worker_threads
        try:
            async with AsyncExitStack() as stack:
                for hook in hooks:
                    await stack.enter_async_context(hook(svc))
                yield
        finally:
            if own_db is not None:
                own_db.dispose()

    app = FastAPI(
        title="Umbrella platform API",
        version="1",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    app.include_router(accounts_router)
    app.include_router(partners_router)
    app.include_router(kiosks_router)
    app.include_router(uplinks_router)
    app.include_router(riders_router)
    app.include_router(deposits_router)
    app.include_router(notifications_router)
    app.include_router(rentals_router)
    app.include_router(ops_router)
    app.include_router(creatives_router)
    app.include_router(bookings_router)
    app.include_router(playlists_router)
    app.include_router(delivery_router)
    app.include_router(billing_router)
    app.include_router(gbfs_router)
    app.include_router(dashboard_router)
    app.include_router(alerts_router)
    app.include_router(rebalancing_router)
    app.include_router(revenue_router)
    app.include_router(console_router)
    return app
