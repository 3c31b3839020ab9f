"""A free preview charges nothing: jobs.charged_xeconds may be 0 (CHECK >= 0, was > 0).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 02:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite can only change a CHECK constraint by rebuilding the table. A zero
    # charge is what a preview inside the daily free allowance costs (reframe.services.previews
    # counts those rows); every other job is still priced at one xecond or more.
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_jobs_positive_charge'), type_='check')
        batch_op.create_check_constraint(
            batch_op.f('ck_jobs_charge_not_negative'), 'charged_xeconds >= 0'
        )
        # The allowance count: an account's jobs of the current UTC day.
        batch_op.create_index(
            batch_op.f('ix_jobs_account_id_created_at'), ['account_id', 'created_at'], unique=False
        )


def downgrade() -> None:
    # Refused by the database while free previews (zero-charge jobs) exist: they would break
    # the old constraint. Delete or re-price them first if a downgrade is really wanted.
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_account_id_created_at'))
        batch_op.drop_constraint(batch_op.f('ck_jobs_charge_not_negative'), type_='check')
        batch_op.create_check_constraint(
            batch_op.f('ck_jobs_positive_charge'), 'charged_xeconds > 0'
        )
