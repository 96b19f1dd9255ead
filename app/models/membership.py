"""Who belongs to a members-only project: raters and researchers one by one, or rater groups."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import JSONType, UTCDateTime, utcnow


class RaterGroup(Base):
    """A named set of raters (a vendor's team, a shift), added to projects as one member."""

    __tablename__ = "rater_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RaterGroupMember(Base):
    __tablename__ = "rater_group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("rater_groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProjectMember(Base):
    """One member of a project: a user or a group, never both (one table, so that the check
    "may this user rate here" is a single EXISTS and the project page lists one set of rows)."""

    __tablename__ = "project_members"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (group_id IS NULL)", name="ck_project_members_one_member"),
        UniqueConstraint("project_id", "user_id", name="uq_project_members_user"),
        UniqueConstraint("project_id", "group_id", name="uq_project_members_group"),
        Index("ix_project_members_user_id", "user_id"),
        Index("ix_project_members_group_id", "group_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("rater_groups.id", ondelete="CASCADE"), nullable=True
    )
    added_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The task kinds this member is given (a list of app/task_kinds.py names); None: every kind
    # of the project's mix. A rater who is a member several times (in person, through groups)
    # gets the union.
    task_kinds: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)


class ApiTokenProject(Base):
    """A project a project-scoped API token may read (see ApiToken.project_scoped)."""

    __tablename__ = "api_token_projects"

    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, index=True
    )
