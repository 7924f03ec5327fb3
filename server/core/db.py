"""Engine and the one-transaction-per-entry-point session scope (CONVENTIONS: edges commit)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, any_, bindparam, create_engine, event
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Requests waiting for the write lock hold a pooled connection meanwhile (a rent holds
        # two): the pool is sized for the API's worker threads, connections are cheap here.
        if path and path != ":memory:":  # (in-memory databases use a singleton pool)
            kwargs.setdefault("pool_size", 20)
            kwargs.setdefault("max_overflow", 80)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite emits BEGIN only before DML, so a SAVEPOINT opened first would run
            # outside any transaction and its RELEASE would commit. SQLAlchemy's documented
            # recipe: let the driver emit nothing, and BEGIN ourselves (below).
            dbapi_conn.isolation_level = None
            # WAL lets the API read while the bridge writes; foreign keys are off by default.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A transaction that reads then writes under contention asks for the write
            # lock up front (`Database.transaction(immediate=True)`): a deferred one would
            # fail with SQLITE_BUSY on upgrade instead of waiting for busy_timeout.
            immediate = conn.get_execution_options().get(IMMEDIATE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # Disconnects are handled optimistically (SQLAlchemy "Disconnect Handling -
    # Optimistic"), not with a ping per checkout: the ping was a round trip on every unit of
    # work, four on a rent's path (bench/rental_roundtrip). When the server restarts, the
    # units of work in flight fail (rolled back, nothing half-written; the bridge retries
    # its batch, a rider retries with the same Idempotency-Key) and SQLAlchemy invalidates
    # every older pooled connection at once, so the next checkout reconnects. Connections
    # are also replaced after an hour, before a firewall or pooler drops them idle.
    kwargs.setdefault("pool_pre_ping", False)
    kwargs.setdefault("pool_recycle", 3600)
    return create_engine(url, **kwargs)


#: Execution option asking SQLite for BEGIN IMMEDIATE (no effect on PostgreSQL).
IMMEDIATE = "umb_sqlite_immediate"


class Database:
    """Owns the engine and hands out sessions; `transaction()` is what entry points use."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any exception.

        `immediate`: on SQLite, take the write lock at BEGIN (for a read-check-write unit
        that races with others, e.g. reserving a slot); PostgreSQL uses row locks instead."""
        with self.sessions() as session, session.begin():
            if immediate and self.is_sqlite:
                session.connection(execution_options={IMMEDIATE: True})
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A single-statement read outside any transaction, for the hot paths (a rider's
        token on every request, a rent's outcome). On PostgreSQL the connection runs in
        autocommit: no BEGIN and COMMIT round trips, about 140 us instead of 300-350 us per
        read here. Each statement sees its own snapshot, so it suits one statement, not a
        read that must be consistent across several. SQLite: an ordinary transaction."""
        if self.is_sqlite:
            with self.transaction() as session:
                yield session
            return
        with (
            self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
            Session(bind=connection, expire_on_commit=False) as session,
        ):
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def any_of(
    session: Session, column: InstrumentedAttribute[Any], values: Collection[Any]
) -> ColumnElement[bool]:
    """`column IN values`. On PostgreSQL as `= ANY(:array)`: one parameter, so the statement
    text is the same whatever the batch size and the server and driver reuse its plan."""
    ordered = sorted(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, ordered, type_=postgresql.ARRAY(column.type)))
    return column.in_(ordered)


#: SQLite caps the parameters of one statement; `any_of_slices` cuts IN lists to this size.
SQLITE_IN_SLICE = 5000


def any_of_slices(
    session: Session, column: InstrumentedAttribute[Any], values: Collection[Any]
) -> list[ColumnElement[bool]]:
    """`any_of` for collections of any size: one clause on PostgreSQL, IN lists of at most
    `SQLITE_IN_SLICE` values on SQLite; [] for no values. Run the query once per clause."""
    ordered = sorted(values)
    if not ordered:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return [any_of(session, column, ordered)]
    return [
        column.in_(ordered[i : i + SQLITE_IN_SLICE])
        for i in range(0, len(ordered), SQLITE_IN_SLICE)
    ]
