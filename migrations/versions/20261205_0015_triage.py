"""triage: a project's triage judge, margin and audit share; what triage decided for each pair
and whose label stands

Revision ID: 0015_triage
Revises: 0014_writing
Create Date: 2026-12-05 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_triage"
down_revision: str | None = "0014_writing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATE = sa.Enum("untriaged", "judge", "audit", "human", name="triagestate", native_enum=False, length=16)


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("triage_model_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("triage_margin", sa.Float(), nullable=False, server_default="2.0"))
        batch.add_column(sa.Column("triage_audit_share", sa.Float(), nullable=False, server_default="0.1"))
        batch.create_foreign_key(
            "fk_projects_triage_model_id_model_versions",
            "model_versions",
            ["triage_model_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("projects") as batch:
        batch.alter_column("triage_margin", server_default=None)
        batch.alter_column("triage_audit_share", server_default=None)

    with op.batch_alter_table("comparisons") as batch:
        batch.add_column(sa.Column("triage", _STATE, nullable=False, server_default="untriaged"))
        batch.add_column(sa.Column("triage_judge_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_comparisons_triage_judge_id_users", "users", ["triage_judge_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("comparisons") as batch:
        batch.alter_column("triage", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("comparisons") as batch:
        batch.drop_constraint("fk_comparisons_triage_judge_id_users", type_="foreignkey")
        batch.drop_column("triage_judge_id")
        batch.drop_column("triage")
    with op.batch_alter_table("projects") as batch:
        batch.drop_constraint("fk_projects_triage_model_id_model_versions", type_="foreignkey")
        batch.drop_column("triage_audit_share")
        batch.drop_column("triage_margin")
        batch.drop_column("triage_model_id")
