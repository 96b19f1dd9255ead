"""Rankings: K completions of one prompt put in order by each of `project.overlap` raters.

A ranking's `completion_ids` fix the stored order of its completions; every per-completion list
(`gold_ranks`, a judgment's `ranks`) is aligned with it. `display_order` lists positions in
`completion_ids` in the order the rater saw them (drawn per assignment, like sides for pairs).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.comparison import AssignmentStatus, ComparisonKind, JudgmentSource
from app.models.types import JSONType, UTCDateTime, enum_column, utcnow


class Ranking(Base):
    """A prompt and K of its completions, to be ordered by `project.overlap` raters."""

    __tablename__ = "rankings"
    __table_args__ = (
        # The next-ranking query walks this index backwards, as for pairs (ix_comparisons_open).
        Index("ix_rankings_open", "project_id", "judgment_count", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    kind: Mapped[ComparisonKind] = mapped_column(enum_column(ComparisonKind), default="regular")
    # The K completion ids in stored order; ranks and gold ranks are aligned with it.
    completion_ids: Mapped[list[int]] = mapped_column(JSONType)
    # Gold rankings: the known rank of each completion (1 = best, equal = tie).
    gold_ranks: Mapped[list[int] | None] = mapped_column(JSONType, nullable=True)
    # Human judgments, kept current under the ranking's row lock (the slots of the overlap).
    judgment_count: Mapped[int] = mapped_column(Integer, default=0)
    # Raters added beyond project.overlap because the orders disagreed (adaptive overlap).
    extra_raters: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RankingAssignment(Base):
    """A ranking shown to one rater, with the order its completions were shown in."""

    __tablename__ = "ranking_assignments"
    __table_args__ = (
        UniqueConstraint("ranking_id", "rater_id"),
        Index("ix_ranking_assignments_rater_status", "rater_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    # Positions in ranking.completion_ids, in the order shown (a permutation of 0..K-1).
    display_order: Mapped[list[int]] = mapped_column(JSONType)
    status: Mapped[AssignmentStatus] = mapped_column(enum_column(AssignmentStatus), default="active")
    leased_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RankingJudgment(Base):
    """One rater's order of one ranking. Unique per (ranking, rater): retries are safe."""

    __tablename__ = "ranking_judgments"
    __table_args__ = (
        UniqueConstraint("ranking_id", "rater_id"),
        Index("ix_ranking_judgments_rater_created", "rater_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("ranking_assignments.id", ondelete="SET NULL"), nullable=True
    )
    # Aligned with ranking.completion_ids: 1 = best, equal ranks = a tie (dense: 1, 2, 2, 3).
    ranks: Mapped[list[int]] = mapped_column(JSONType)
    # The "all bad" line: completions ranked below it (rank > cutoff_rank) are unacceptable;
    # 0 = all of them, None = no line drawn.
    cutoff_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Positions in ranking.completion_ids as the rater saw them (position-bias analysis).
    display_order: Mapped[list[int]] = mapped_column(JSONType)
    source: Mapped[JudgmentSource] = mapped_column(enum_column(JudgmentSource), default="human")
    time_spent_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
