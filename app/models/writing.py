"""Writing tasks: raters write the ideal next assistant turn for a prompt, or improve a model's
completion; their drafts; and the reviews of what they wrote (app/services/writing/)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.comparison import AssignmentStatus
from app.models.types import JSONType, UTCDateTime, enum_column, utcnow


class WritingKind(enum.StrEnum):
    write = "write"  # write the next assistant turn from scratch
    improve = "improve"  # the editor starts from a model completion


class WritingTask(Base):
    """A prompt to be answered (or a completion to be improved) by `project.writing_overlap` raters."""

    __tablename__ = "writing_tasks"
    __table_args__ = (
        Index("ix_writing_tasks_open", "project_id", "submission_count", "id"),
        CheckConstraint("(kind = 'improve') = (completion_id IS NOT NULL)", name="ck_writing_tasks_origin"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    kind: Mapped[WritingKind] = mapped_column(enum_column(WritingKind))
    completion_id: Mapped[int | None] = mapped_column(
        ForeignKey("completions.id", ondelete="CASCADE"), nullable=True
    )
    # Kept equal to the number of demonstrations written for it, under the task's row lock.
    submission_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WritingAssignment(Base):
    """A writing task shown to one rater: a lease like a pair's."""

    __tablename__ = "writing_assignments"
    __table_args__ = (
        UniqueConstraint("writing_task_id", "rater_id"),
        Index("ix_writing_assignments_rater_status", "rater_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    writing_task_id: Mapped[int] = mapped_column(ForeignKey("writing_tasks.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[AssignmentStatus] = mapped_column(enum_column(AssignmentStatus), default="active")
    leased_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Draft(Base):
    """The text a rater is writing for a task, saved as they type (one per rater and task)."""

    __tablename__ = "drafts"
    __table_args__ = (UniqueConstraint("user_id", "writing_task_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    writing_task_id: Mapped[int] = mapped_column(ForeignKey("writing_tasks.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class DemonstrationReview(Base):
    """One reviewer's verdict on a written or improved demonstration (never their own)."""

    __tablename__ = "demonstration_reviews"
    __table_args__ = (
        UniqueConstraint("demonstration_id", "reviewer_id"),
        CheckConstraint("score BETWEEN 1 AND 5", name="score_range"),
        Index("ix_demonstration_reviews_reviewer", "reviewer_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    demonstration_id: Mapped[int] = mapped_column(ForeignKey("demonstrations.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    accepted: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[int] = mapped_column(Integer)
    flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
