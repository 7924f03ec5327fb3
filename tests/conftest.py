"""Fixtures shared by every test layer.

`db` runs a test twice: on the embedded SQLite file and on real PostgreSQL. Each test gets
an empty schema: a fresh SQLite file, or a PostgreSQL database created once per session and
truncated between tests (bridge code commits from its own threads, so the roll-back-the-
outer-transaction recipe cannot hold it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from server.core.db import Database
from server.models import Base
from tests.services import PG_ADMIN_URL, REDIS_URL, require

_pg_url: str | None = None


def _pg_database() -> str:
    """Create one throw-away database per test session (and per xdist worker)."""
    global _pg_url
    if _pg_url is None:
        require("PostgreSQL", "127.0.0.1", 5432)
        name = f"umb_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        _pg_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        engine = create_engine(_pg_url)
        Base.metadata.create_all(engine)
        engine.dispose()
    return _pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'test.sqlite3'}")
        Base.metadata.create_all(database.engine)
    else:
        database = Database(_pg_database(), pool_size=5, max_overflow=10)
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with database.engine.begin() as c:
            c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield database
    database.dispose()


@pytest.fixture
def redis_url() -> str:
    require("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _pg_url is None:
        return
    name = _pg_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
