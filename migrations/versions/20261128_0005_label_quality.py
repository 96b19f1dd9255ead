"""label quality, AI judges and evaluation: gold rate, adaptive overlap, paused raters,
resolutions of disputed pairs, AI judgment provenance

Revision ID: 0005_label_quality
Revises: 0004_assignment_index
Create Date: 2026-11-28 00:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.models.types

revision: str = "0005_label_quality"
down_revision: str | None = "0004_assignment_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_CHOICE = sa.Enum("A", "B", "tie", name="choice", native_enum=False, length=16)


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("max_overlap", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("split_threshold", sa.Float(), nullable=False, server_default="0.66"))
        batch.add_column(sa.Column("gold_rate", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("judge_rubric", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("is_paused", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("comparisons") as batch:
        batch.add_column(sa.Column("extra_raters", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("resolved_choice", _CHOICE, nullable=True))
        batch.add_column(sa.Column("resolved_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("resolved_at", app.models.types.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("resolution_note", sa.Text(), nullable=False, server_default=""))
        batch.create_foreign_key(
            "fk_comparisons_resolved_by_id_users", "users", ["resolved_by_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("judgments") as batch:
        batch.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("provenance", _JSON, nullable=True))
        batch.create_foreign_key("fk_judgments_run_id", "runs", ["run_id"], ["id"], ondelete="SET NULL")
    # Server defaults only filled the existing rows; the models supply the values from now on.
    with op.batch_alter_table("projects") as batch:
        batch.alter_column("split_threshold", server_default=None)
        batch.alter_column("gold_rate", server_default=None)
        batch.alter_column("judge_rubric", server_default=None)
    with op.batch_alter_table("users") as batch:
        batch.alter_column("is_paused", server_default=None)
    with op.batch_alter_table("comparisons") as batch:
        batch.alter_column("extra_raters", server_default=None)
        batch.alter_column("resolution_note", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("judgments") as batch:
        batch.drop_constraint("fk_judgments_run_id", type_="foreignkey")
        batch.drop_column("provenance")
        batch.drop_column("run_id")
    with op.batch_alter_table("comparisons") as batch:
        batch.drop_constraint("fk_comparisons_resolved_by_id_users", type_="foreignkey")
        batch.drop_column("resolution_note")
        batch.drop_column("resolved_at")
        batch.drop_column("resolved_by_id")
        batch.drop_column("resolved_choice")
        batch.drop_column("extra_raters")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("is_paused")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("judge_rubric")
        batch.drop_column("gold_rate")
        batch.drop_column("split_threshold")
        batch.drop_column("max_overlap")
