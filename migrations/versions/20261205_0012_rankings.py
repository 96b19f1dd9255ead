"""rankings: K completions of a prompt ordered by raters (rankings, their assignments and judgments)

Revision ID: 0012_rankings
Revises: 0011_audit_events
Create Date: 2026-12-05 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.models.types

revision: str = "0012_rankings"
down_revision: str | None = "0011_audit_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


_KIND = sa.Enum("regular", "gold", name="comparisonkind", native_enum=False, length=16)
_STATUS = sa.Enum(
    "active", "done", "skipped", "lapsed", name="assignmentstatus", native_enum=False, length=16
)
_SOURCE = sa.Enum("human", "ai", name="judgmentsource", native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "rankings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("kind", _KIND, nullable=False),
        sa.Column("completion_ids", _json(), nullable=False),
        sa.Column("gold_ranks", _json(), nullable=True),
        sa.Column("judgment_count", sa.Integer(), nullable=False),
        sa.Column("extra_raters", sa.Integer(), nullable=False),
        sa.Column("created_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rankings_open", "rankings", ["project_id", "judgment_count", "id"], unique=False)
    op.create_table(
        "ranking_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ranking_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("display_order", _json(), nullable=False),
        sa.Column("status", _STATUS, nullable=False),
        sa.Column("leased_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ranking_id"], ["rankings.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rater_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ranking_id", "rater_id"),
    )
    op.create_index(
        "ix_ranking_assignments_rater_status", "ranking_assignments", ["rater_id", "status"], unique=False
    )
    op.create_table(
        "ranking_judgments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ranking_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=True),
        sa.Column("ranks", _json(), nullable=False),
        sa.Column("cutoff_rank", sa.Integer(), nullable=True),
        sa.Column("display_order", _json(), nullable=False),
        sa.Column("source", _SOURCE, nullable=False),
        sa.Column("time_spent_ms", sa.Integer(), nullable=False),
        sa.Column("created_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ranking_id"], ["rankings.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rater_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["assignment_id"], ["ranking_assignments.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ranking_id", "rater_id"),
    )
    op.create_index(
        "ix_ranking_judgments_rater_created", "ranking_judgments", ["rater_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ranking_judgments_rater_created", table_name="ranking_judgments")
    op.drop_table("ranking_judgments")
    op.drop_index("ix_ranking_assignments_rater_status", table_name="ranking_assignments")
    op.drop_table("ranking_assignments")
    op.drop_index("ix_rankings_open", table_name="rankings")
    op.drop_table("rankings")
