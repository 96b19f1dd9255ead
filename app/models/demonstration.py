from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import JSONType, UTCDateTime, enum_column, utcnow


class DemonstrationSource(enum.StrEnum):
    imported = "imported"
    written = "written"  # by a rater, from scratch (a write task)
    improved = "improved"  # by a rater, from a model completion (an improve task)


class ReviewStatus(enum.StrEnum):
    pending = "pending"
    accepted = "accepted"
    rejected = "rejected"


class Demonstration(Base):
    """An ideal response to a prompt, written or chosen by a person: SFT data.

    Imported rows are `accepted`; written and improved ones start `pending` and are decided by
    their reviews (app/services/writing/reviews.py). An improved one keeps the completion it was
    edited from (and that completion's model version), the unified diff and the edit distance.
    """

    __tablename__ = "demonstrations"
    __table_args__ = (
        UniqueConstraint("prompt_id", "content_hash"),
        Index("ix_demonstrations_review", "project_id", "review_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    response: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[DemonstrationSource] = mapped_column(
        enum_column(DemonstrationSource), default=DemonstrationSource.imported
    )
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    writing_task_id: Mapped[int | None] = mapped_column(
        ForeignKey("writing_tasks.id", ondelete="SET NULL"), nullable=True
    )
    edited_from_completion_id: Mapped[int | None] = mapped_column(
        ForeignKey("completions.id", ondelete="SET NULL"), nullable=True
    )
    edited_from_model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey(
            "model_versions.id", ondelete="SET NULL", name="fk_demonstrations_edited_from_model_version_id"
        ),
        nullable=True,
    )
    diff: Mapped[str] = mapped_column(Text, default="")
    edit_distance: Mapped[int | None] = mapped_column(Integer, nullable=True)
    time_spent_ms: Mapped[int] = mapped_column(Integer, default=0)
    review_status: Mapped[ReviewStatus] = mapped_column(
        enum_column(ReviewStatus), default=ReviewStatus.accepted
    )
    review_count: Mapped[int] = mapped_column(Integer, default=0)
    lazy_flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
