"""ledger: statement-level balance check, partial kiosk index on postings

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 15:00:00

The per-row deferred constraint trigger ran one SUM query per posting at COMMIT; the
statement-level trigger runs one set-wise query per INSERT over its transition table
(server/models/ledger.py). Postings without a kiosk are no longer indexed by kiosk.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

from server.models.ledger import PG_LEDGER_BALANCE_DDL, PG_LEDGER_BALANCE_DROP_DDL

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOT_NULL = sa.text("kiosk_id IS NOT NULL")


def _revision_0002() -> ModuleType:
    """Revision 0002's module, for the per-row balance check it installed."""
    path = Path(__file__).with_name("0002_double_entry_ledger.py")
    spec = importlib.util.spec_from_file_location("_revision_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.drop_index('ix_ledger_postings_kiosk_id', table_name='ledger_postings')
    op.create_index(
        'ix_ledger_postings_kiosk_id',
        'ledger_postings',
        ['kiosk_id'],
        unique=False,
        postgresql_where=_NOT_NULL,
        sqlite_where=_NOT_NULL,
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in (*_revision_0002().PG_BALANCE_DROP_DDL, *PG_LEDGER_BALANCE_DDL):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in (*PG_LEDGER_BALANCE_DROP_DDL, *_revision_0002().PG_BALANCE_DDL):
            op.execute(statement)
    op.drop_index('ix_ledger_postings_kiosk_id', table_name='ledger_postings')
    op.create_index('ix_ledger_postings_kiosk_id', 'ledger_postings', ['kiosk_id'], unique=False)
