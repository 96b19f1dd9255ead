"""selection: projects choose which open pair raters get (strategy, random share); comparisons
carry the latest score run's predicted preference, uncertainty and priority, and a random key

Revision ID: 0013_selection
Revises: 0012_rankings
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.types

revision: str = "0013_selection"
down_revision: str | None = "0012_rankings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STRATEGY = sa.Enum(
    "arrival", "random", "uncertainty", "mix", name="selectionstrategy", native_enum=False, length=16
)

# Existing pairs get a key spread over [0, 1) by a multiplicative hash of their id (Knuth's
# constant, modulo the prime 4294967291): the same on both databases, in one statement.
_BACKFILL_RANDOM_KEY = "UPDATE comparisons SET random_key = ((id * 2654435761) % 4294967291) / 4294967291.0"


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("selection_strategy", _STRATEGY, nullable=False, server_default="arrival"))
        batch.add_column(sa.Column("random_share", sa.Float(), nullable=False, server_default="0.2"))
    with op.batch_alter_table("projects") as batch:
        batch.alter_column("selection_strategy", server_default=None)
        batch.alter_column("random_share", server_default=None)

    with op.batch_alter_table("comparisons") as batch:
        batch.add_column(sa.Column("predicted_preference", sa.Float(), nullable=True))
        batch.add_column(sa.Column("uncertainty", sa.Float(), nullable=True))
        batch.add_column(sa.Column("priority", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("scored_at", app.models.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("random_key", sa.Float(), nullable=True))
    op.execute(_BACKFILL_RANDOM_KEY)
    with op.batch_alter_table("comparisons") as batch:
        batch.alter_column("priority", server_default=None)
        batch.alter_column("random_key", existing_type=sa.Float(), nullable=False)
    op.create_index(
        "ix_comparisons_priority",
        "comparisons",
        ["project_id", "judgment_count", "priority", "id"],
        unique=False,
    )
    op.create_index(
        "ix_comparisons_random", "comparisons", ["project_id", "judgment_count", "random_key"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_comparisons_random", table_name="comparisons")
    op.drop_index("ix_comparisons_priority", table_name="comparisons")
    with op.batch_alter_table("comparisons") as batch:
        batch.drop_column("random_key")
        batch.drop_column("scored_at")
        batch.drop_column("priority")
        batch.drop_column("uncertainty")
        batch.drop_column("predicted_preference")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("random_share")
        batch.drop_column("selection_strategy")
