"""Customers can delete a project and close their account: projects.deleted_at, accounts.closed_at.

A deleted project and a closed account stay as rows (tombstones): jobs and the append-only
ledger point at them, and the ledger is kept for accounting. What identified the customer or
their videos is scrubbed from the rows by reframe.services.deletion; these columns say when.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 02:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('closed_at')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('deleted_at')
