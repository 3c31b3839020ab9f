"""Jobs keep the render choices the customer made: output format, slow motion, preview.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 19:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One JSON document, not a column per choice: the choices are read together (by the
    # render and by GET /jobs) and new ones must not need a table rebuild on SQLite.
    # NULL means the defaults of the time the job was accepted: MP4, H.264, CRF 18, audio kept.
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('render_options', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('render_options')
