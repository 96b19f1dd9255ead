"""project membership: members-only projects, rater groups, researchers limited to their projects,
project-scoped API tokens

Revision ID: 0009_project_membership
Revises: 0008_workers_and_run_phase
Create Date: 2026-12-04 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.types

revision: str = "0009_project_membership"
down_revision: str | None = "0008_workers_and_run_phase"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VISIBILITY = sa.Enum("open", "members", name="visibility", native_enum=False, length=16)


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("visibility", _VISIBILITY, nullable=False, server_default="open"))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("all_projects", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("project_scoped", sa.Boolean(), nullable=False, server_default=sa.false()))
    # Server defaults only filled the existing rows (open projects, unrestricted researchers and
    # tokens: what they were); the models supply the values from now on.
    with op.batch_alter_table("projects") as batch:
        batch.alter_column("visibility", server_default=None)
    with op.batch_alter_table("users") as batch:
        batch.alter_column("all_projects", server_default=None)
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("project_scoped", server_default=None)

    op.create_table(
        "rater_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "rater_group_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["rater_groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id"),
    )
    op.create_index("ix_rater_group_members_user_id", "rater_group_members", ["user_id"])
    op.create_table(
        "project_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("added_by_id", sa.Integer(), nullable=True),
        sa.Column("added_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("(user_id IS NULL) <> (group_id IS NULL)", name="ck_project_members_one_member"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["group_id"], ["rater_groups.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["added_by_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "user_id", name="uq_project_members_user"),
        sa.UniqueConstraint("project_id", "group_id", name="uq_project_members_group"),
    )
    op.create_index("ix_project_members_user_id", "project_members", ["user_id"])
    op.create_index("ix_project_members_group_id", "project_members", ["group_id"])
    op.create_table(
        "api_token_projects",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_id", "project_id"),
    )
    op.create_index("ix_api_token_projects_project_id", "api_token_projects", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_api_token_projects_project_id", table_name="api_token_projects")
    op.drop_table("api_token_projects")
    op.drop_index("ix_project_members_group_id", table_name="project_members")
    op.drop_index("ix_project_members_user_id", table_name="project_members")
    op.drop_table("project_members")
    op.drop_index("ix_rater_group_members_user_id", table_name="rater_group_members")
    op.drop_table("rater_group_members")
    op.drop_table("rater_groups")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("project_scoped")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("all_projects")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("visibility")
