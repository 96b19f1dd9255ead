"""assignment index in the order the next-pair query reads (backwards)

Revision ID: 0004_assignment_index
Revises: 0003_training
Create Date: 2026-11-27 23:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_assignment_index"
down_revision: str | None = "0003_training"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_comparisons_open", table_name="comparisons")
    op.create_index(
        "ix_comparisons_open",
        "comparisons",
        ["project_id", "judgment_count", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_comparisons_open", table_name="comparisons")
    op.create_index("ix_comparisons_open", "comparisons", ["project_id", "judgment_count"], unique=False)
