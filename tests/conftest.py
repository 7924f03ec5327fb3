"""Fixtures shared by every test layer.

`db` runs a test twice: on the embedded SQLite file and on real PostgreSQL. Each test gets
an empty schema: a fresh SQLite file, or a PostgreSQL database created once per session and
truncated between tests (bridge code commits from its own threads, so the roll-back-the-
outer-transaction recipe cannot hold it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from server.core.clock import clock
from server.core.db import Database
from server.ledger import service as ledger
from server.models import Base
from server.wechat.miniprogram import MiniProgramClient
from server.wechat.standin import WeChatStandIn
from tests.services import REDIS_URL, require, throwaway_pg_database
from tests.wechat_env import make_standin


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """One throw-away PostgreSQL database per test session (and per xdist worker)."""
    with throwaway_pg_database(migrate=False) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'test.sqlite3'}")
        Base.metadata.create_all(database.engine)
    else:
        url: str = request.getfixturevalue("pg_database_url")
        database = Database(url, pool_size=5, max_overflow=10)
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with database.engine.begin() as c:
            c.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield database
    try:
        # SPEC §3, checked after every test scenario that had a database: whatever the test
        # did (refusals, races, replays), the ledger balances and no deposit is lost.
        with database.transaction() as session:
            problems = ledger.check_invariants(session)
        assert problems == [], f"ledger invariants broken after the test: {problems}"
    finally:
        database.dispose()


@pytest.fixture
def redis_url() -> str:
    require("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


@pytest.fixture(autouse=True)
def _reset_clock() -> Iterator[None]:
    """Tests move the one clock (core/clock.py); every test starts from the real time."""
    yield
    clock.reset()


@pytest.fixture
def standin() -> Iterator[WeChatStandIn]:
    """A local WeChat over real HTTP (tests/wechat_env.py: shared keys, fast retries)."""
    with make_standin() as s:
        yield s


@pytest.fixture
def mini_program(standin: WeChatStandIn) -> Iterator[MiniProgramClient]:
    """Our mini-program API client (login, subscribe messages) talking to the stand-in."""
    with MiniProgramClient(standin.appid, standin.secret, base_url=standin.url) as c:
        yield c
