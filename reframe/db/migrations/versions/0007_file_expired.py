"""Swept files are marked expired: the files.status CHECK constraint gains 'expired'.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ('pending', 'ready', 'rejected')
_NEW = (*_OLD, 'expired')


def _status(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(
        *values, name='file_status', native_enum=False, create_constraint=True, length=16
    )


def upgrade() -> None:
    # Batch mode: SQLite can only change a CHECK constraint by rebuilding the table.
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.alter_column(
            'status', existing_type=_status(_OLD), type_=_status(_NEW), existing_nullable=False
        )
        # The sweeper's queries: pending uploads by age, ready files by age.
        batch_op.create_index(
            batch_op.f('ix_files_status_created_at'), ['status', 'created_at'], unique=False
        )


def downgrade() -> None:
    op.execute("UPDATE files SET status = 'rejected' WHERE status = 'expired'")
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_files_status_created_at'))
        batch_op.alter_column(
            'status', existing_type=_status(_NEW), type_=_status(_OLD), existing_nullable=False
        )
