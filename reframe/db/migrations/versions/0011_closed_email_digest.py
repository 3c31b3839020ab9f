"""A closed account keeps a keyed digest of its email: accounts.closed_email_digest.

Closing an account scrubs its email (reframe.services.deletion); the digest (HMAC with the
service's secret, reframe.services.accounts.email_digest) is what lets a later signup with the
same address go without a second signup gift. Accounts closed before this revision have none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 21:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_email_digest', sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f('ix_accounts_closed_email_digest'), ['closed_email_digest'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_closed_email_digest'))
        batch_op.drop_column('closed_email_digest')
