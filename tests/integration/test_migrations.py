"""The Alembic history builds exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from server.core.db import Database
from server.core.migrate import upgrade
from server.models import Base


def test_migrations_build_the_schema_the_models_describe(db: Database) -> None:
    with db.engine.begin() as c:  # start from nothing: the fixture created tables from models
        Base.metadata.drop_all(c)
        c.execute(text("DROP TABLE IF EXISTS alembic_version"))

    upgrade(db.url)

    with db.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == []
