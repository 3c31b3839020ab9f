"""Verified inputs are pinned copies, and jobs pin the object and probe they were charged on.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 16:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pinned_key', sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column('content_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column('pinned_version_id', sa.String(length=255), nullable=True)
        )
        batch_op.create_unique_constraint(batch_op.f('uq_files_pinned_key'), ['pinned_key'])
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('input_key', sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column('input_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('input_size_bytes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('input_version', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('input_version_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('input_probe', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('input_probe')
        batch_op.drop_column('input_version_id')
        batch_op.drop_column('input_version')
        batch_op.drop_column('input_size_bytes')
        batch_op.drop_column('input_sha256')
        batch_op.drop_column('input_key')
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_files_pinned_key'), type_='unique')
        batch_op.drop_column('pinned_version_id')
        batch_op.drop_column('content_sha256')
        batch_op.drop_column('pinned_key')
