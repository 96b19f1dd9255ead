"""writing: task mix per project, task kinds per member, writing tasks, their assignments and
drafts, demonstrations written/improved by raters and their reviews; rank_k for ranking tasks

Revision ID: 0014_writing
Revises: 0013_selection
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.models.types

revision: str = "0014_writing"
down_revision: str | None = "0013_selection"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


_STATUS = ("active", "done", "skipped", "lapsed")
_PROJECT_COLUMNS = ("task_mix", "writing_overlap", "review_overlap", "max_answer_chars", "rank_k")
_DEMONSTRATION_COLUMNS = ("source", "diff", "time_spent_ms", "review_status", "review_count", "lazy_flags")


def upgrade() -> None:
    # Server defaults fill the existing rows (a compare-only project; imported, accepted
    # demonstrations), then go: the models supply the values from now on.
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("task_mix", _json(), nullable=False, server_default='{"compare": 1.0}'))
        batch.add_column(sa.Column("writing_overlap", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("review_overlap", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("min_words", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_words", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_answer_chars", sa.Integer(), nullable=False, server_default="20000"))
        batch.add_column(sa.Column("rank_k", sa.Integer(), nullable=False, server_default="4"))
    with op.batch_alter_table("projects") as batch:
        for column in _PROJECT_COLUMNS:
            batch.alter_column(column, server_default=None)
    with op.batch_alter_table("project_members") as batch:
        batch.add_column(sa.Column("task_kinds", _json(), nullable=True))

    op.create_table(
        "writing_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("kind", _enum("writingkind", "write", "improve"), nullable=False),
        sa.Column("completion_id", sa.Integer(), nullable=True),
        sa.Column("submission_count", sa.Integer(), nullable=False),
        sa.Column("created_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(kind = 'improve') = (completion_id IS NOT NULL)", name="ck_writing_tasks_origin"
        ),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["completion_id"], ["completions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_writing_tasks_open", "writing_tasks", ["project_id", "submission_count", "id"])
    op.create_table(
        "writing_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("writing_task_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("status", _enum("assignmentstatus", *_STATUS), nullable=False),
        sa.Column("leased_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["writing_task_id"], ["writing_tasks.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rater_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("writing_task_id", "rater_id"),
    )
    op.create_index("ix_writing_assignments_rater_status", "writing_assignments", ["rater_id", "status"])
    op.create_table(
        "drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("writing_task_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("updated_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["writing_task_id"], ["writing_tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "writing_task_id"),
    )

    with op.batch_alter_table("demonstrations") as batch:
        batch.add_column(sa.Column(
            "source", _enum("demonstrationsource", "imported", "written", "improved"),
            nullable=False, server_default="imported",
        ))  # fmt: skip
        batch.add_column(sa.Column("author_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("writing_task_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("edited_from_completion_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("edited_from_model_version_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("diff", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("edit_distance", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("time_spent_ms", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column(
            "review_status", _enum("reviewstatus", "pending", "accepted", "rejected"),
            nullable=False, server_default="accepted",
        ))  # fmt: skip
        batch.add_column(sa.Column("review_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("lazy_flags", _json(), nullable=False, server_default="[]"))
        batch.create_foreign_key(
            "fk_demonstrations_author_id_users", "users", ["author_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_foreign_key(
            "fk_demonstrations_writing_task_id_writing_tasks", "writing_tasks", ["writing_task_id"], ["id"],
            ondelete="SET NULL",
        )  # fmt: skip
        batch.create_foreign_key(
            "fk_demonstrations_edited_from_completion_id_completions", "completions",
            ["edited_from_completion_id"], ["id"], ondelete="SET NULL",
        )  # fmt: skip
        batch.create_foreign_key(
            "fk_demonstrations_edited_from_model_version_id", "model_versions",
            ["edited_from_model_version_id"], ["id"], ondelete="SET NULL",
        )  # fmt: skip
        batch.create_index("ix_demonstrations_review", ["project_id", "review_status"])
    with op.batch_alter_table("demonstrations") as batch:
        for column in _DEMONSTRATION_COLUMNS:
            batch.alter_column(column, server_default=None)

    op.create_table(
        "demonstration_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("demonstration_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("flags", _json(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("score BETWEEN 1 AND 5", name="score_range"),
        sa.ForeignKeyConstraint(["demonstration_id"], ["demonstrations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reviewer_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("demonstration_id", "reviewer_id"),
    )
    op.create_index(
        "ix_demonstration_reviews_reviewer", "demonstration_reviews", ["reviewer_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_demonstration_reviews_reviewer", table_name="demonstration_reviews")
    op.drop_table("demonstration_reviews")
    with op.batch_alter_table("demonstrations") as batch:
        batch.drop_index("ix_demonstrations_review")
        batch.drop_constraint("fk_demonstrations_edited_from_model_version_id", type_="foreignkey")
        batch.drop_constraint("fk_demonstrations_edited_from_completion_id_completions", type_="foreignkey")
        batch.drop_constraint("fk_demonstrations_writing_task_id_writing_tasks", type_="foreignkey")
        batch.drop_constraint("fk_demonstrations_author_id_users", type_="foreignkey")
        for column in (
            "lazy_flags", "review_count", "review_status", "time_spent_ms", "edit_distance", "diff",
            "edited_from_model_version_id", "edited_from_completion_id", "writing_task_id", "author_id",
            "source",
        ):  # fmt: skip
            batch.drop_column(column)
    op.drop_table("drafts")
    op.drop_index("ix_writing_assignments_rater_status", table_name="writing_assignments")
    op.drop_table("writing_assignments")
    op.drop_index("ix_writing_tasks_open", table_name="writing_tasks")
    op.drop_table("writing_tasks")
    with op.batch_alter_table("project_members") as batch:
        batch.drop_column("task_kinds")
    with op.batch_alter_table("projects") as batch:
        for column in (
            "rank_k", "max_answer_chars", "max_words", "min_words", "review_overlap", "writing_overlap",
            "task_mix",
        ):  # fmt: skip
            batch.drop_column(column)
