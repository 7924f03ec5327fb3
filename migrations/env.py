"""Alembic environment: the URL comes from server settings (or -x url=...), metadata from models."""

from __future__ import annotations

from alembic import context

from server.config import get_settings
from server.core.db import make_engine
from server.models import Base

config = context.config
url = context.get_x_argument(as_dictionary=True).get("url") or config.attributes.get("url")
if not url:
    url = get_settings().db_url


def run_migrations_offline() -> None:
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
