"""PostgreSQL drops every connection (a restart, a failover, an operator's
pg_terminate_backend): the API and the bridge carry on without a ping per checkout
(server/core/db.py handles disconnects optimistically). What was in flight fails cleanly and
nothing is lost or written twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text

from firmware_protocol.messages import Heartbeat, SlotState
from server.app import create_app
from server.bridge.dispatch import Dispatcher, inject
from server.config import Settings
from server.core.clock import clock
from server.core.db import Database
from server.core.shared_state import MemorySharedState
from server.models import Base, Partner, RejectedUplink, Slot, SlotStatus, UplinkReceipt
from tests.integration.rows import add_kiosks
from tests.services import PG_ADMIN_URL


@pytest.fixture
def pg(pg_database_url: str) -> Iterator[Database]:
    database = Database(pg_database_url, pool_size=3, max_overflow=0)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with database.engine.begin() as c:
        c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield database
    database.dispose()


def drop_every_connection(database: Database) -> int:
    """What a server restart does to our pool: every backend of the database is gone."""
    name = database.engine.url.database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            return int(
                c.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                ).scalar_one()
            )
    finally:
        admin.dispose()


def partners(database: Database) -> list[str]:
    with database.transaction() as s:
        return list(s.scalars(select(Partner.name).order_by(Partner.id)))


def test_api_answers_503_once_then_works_and_the_failed_write_left_nothing(
    pg: Database, tmp_path: Path
) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path), db=pg)) as client:
        r = client.post("/api/v1/partners", json={"name": "Before", "region": "Hangzhou"})
        assert r.status_code == 201, r.text
        assert drop_every_connection(pg) >= 1

        # The pooled connection is dead: this write fails with a clear, retryable error...
        r = client.post("/api/v1/partners", json={"name": "Lost write", "region": "Hangzhou"})
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "database_unavailable"
        assert r.headers["Retry-After"] == "1"
        # ...and the pool was invalidated with it: the retry and what follows just work.
        r = client.post("/api/v1/partners", json={"name": "Retried", "region": "Hangzhou"})
        assert r.status_code == 201, r.text
        assert client.get("/api/v1/partners").status_code == 200

    assert partners(pg) == ["Before", "Retried"]


def test_bridge_applies_the_batch_that_met_the_dead_connection(pg: Database) -> None:
    add_kiosks(pg, "K0001")
    dispatcher = Dispatcher(pg, MemorySharedState())
    tags = (SlotState(tag=bytes.fromhex("a1a1a1a1")),)
    first = inject(dispatcher, Heartbeat("K0001", 1, clock.now_ms(), -70, tags))
    assert first.applied == 1
    assert drop_every_connection(pg) >= 1

    # The batch transaction fails on the dead connection; the message is retried on a
    # fresh one and applied, not recorded as a failure.
    more = (*tags, SlotState(tag=bytes.fromhex("b2b2b2b2")))
    second = inject(dispatcher, Heartbeat("K0001", 2, clock.now_ms(), -65, more))
    assert second.applied == 1

    with pg.transaction() as s:
        assert s.scalar(select(func.count()).select_from(UplinkReceipt)) == 2
        assert s.scalar(select(func.count()).select_from(RejectedUplink)) == 0
        slot = s.get(Slot, ("K0001", 2))
        assert slot is not None
        assert slot.status is SlotStatus.UMBRELLA
