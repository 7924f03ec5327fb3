"""Reaching the real services. Under CI=true an unreachable service fails the test; on a
developer machine without them it skips with the reason (guide: "Real components")."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest
from sqlalchemy import create_engine, text

from server.core.migrate import upgrade
from server.models import Base

PG_ADMIN_URL = os.environ.get(
    "UMB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("UMB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MOSQUITTO_HOST = os.environ.get("UMB_TEST_MQTT_HOST", "127.0.0.1")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(service: str, host: str, port: int) -> None:
    if port_open(host, port):
        return
    message = f"{service} is not reachable on {host}:{port}"
    if in_ci():
        pytest.fail(message + " (CI=true: a needed service must be up)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_pg_database(*, migrate: bool, prefix: str = "umb_test") -> Iterator[str]:
    """A new PostgreSQL database with a unique name (per process), its schema made by Alembic
    (`migrate=True`) or by `Base.metadata.create_all`; yields its URL, drops it on exit."""
    require("PostgreSQL", "127.0.0.1", 5432)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        try:
            if migrate:
                upgrade(url)
            else:
                engine = create_engine(url)
                Base.metadata.create_all(engine)
                engine.dispose()
            yield url
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


T = TypeVar("T")


def eventually(check: Callable[[], T], timeout_s: float = 20.0, interval_s: float = 0.1) -> T:
    """Call `check` until it stops raising AssertionError and return its value; after
    `timeout_s` the last AssertionError propagates, so the failure says what differed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval_s)
