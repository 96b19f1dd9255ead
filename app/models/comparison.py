from __future__ import annotations

import enum
import random
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import JSONType, UTCDateTime, enum_column, utcnow


class ComparisonKind(enum.StrEnum):
    regular = "regular"
    gold = "gold"  # the answer is known: measures rater accuracy


class Choice(enum.StrEnum):
    A = "A"
    B = "B"
    tie = "tie"


class AssignmentStatus(enum.StrEnum):
    active = "active"  # shown to the rater; holds a slot until lease_expires_at
    done = "done"  # judged
    skipped = "skipped"  # the rater passed; the slot returns to others
    lapsed = "lapsed"  # lease ran out and the slot went to someone else


class JudgmentSource(enum.StrEnum):
    human = "human"
    ai = "ai"
    edit = "edit"  # a rater improved the original: the edit beats it (app/services/writing/)


class TriageState(enum.StrEnum):
    """What AI triage decided for a pair (app/services/triage/)."""

    untriaged = "untriaged"  # not looked at by the project's triage judge
    judge = "judge"  # the judge was confident: its label stands and the pair skips the human queue
    audit = "audit"  # the judge was confident, and the pair still goes to humans (the audit share)
    human = "human"  # the judge was not confident: raters label it as usual


class Comparison(Base):
    """A prompt and two of its completions, to be judged by `project.overlap` raters."""

    __tablename__ = "comparisons"
    __table_args__ = (
        UniqueConstraint("completion_a_id", "completion_b_id"),
        CheckConstraint("completion_a_id <> completion_b_id", name="distinct_completions"),
        # The next-pair query walks this index backwards (judgment_count DESC, id DESC) and stops
        # at the first free pair instead of sorting the project's pairs.
        Index("ix_comparisons_open", "project_id", "judgment_count", "id"),
        # The uncertainty walk (priority DESC) and the random walk (from a random key), read the
        # same way: pairs with votes first, then by the key.
        Index("ix_comparisons_priority", "project_id", "judgment_count", "priority", "id"),
        Index("ix_comparisons_random", "project_id", "judgment_count", "random_key"),
        # The triage report reads only the pairs triage decided (most pairs stay untriaged).
        Index(
            "ix_comparisons_triaged",
            "project_id",
            "triage",
            postgresql_where=text("triage <> 'untriaged'"),
            sqlite_where=text("triage <> 'untriaged'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"))
    completion_a_id: Mapped[int] = mapped_column(ForeignKey("completions.id", ondelete="CASCADE"))
    completion_b_id: Mapped[int] = mapped_column(ForeignKey("completions.id", ondelete="CASCADE"))
    kind: Mapped[ComparisonKind] = mapped_column(enum_column(ComparisonKind), default="regular")
    gold_choice: Mapped[Choice | None] = mapped_column(enum_column(Choice), nullable=True)
    # Kept equal to the number of human judgments under the comparison's row lock (the slots of
    # the overlap); AI judgments never count here.
    judgment_count: Mapped[int] = mapped_column(Integer, default=0)
    # Raters added beyond project.overlap because the votes split (adaptive overlap).
    extra_raters: Mapped[int] = mapped_column(Integer, default=0)
    # An admin's resolution of a disputed pair: used as its label like a gold answer.
    resolved_choice: Mapped[Choice | None] = mapped_column(enum_column(Choice), nullable=True)
    resolved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL", name="fk_comparisons_resolved_by_id_users"),
        nullable=True,
    )
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolution_note: Mapped[str] = mapped_column(Text, default="")
    # Written by the latest `score` run: the probability that A is preferred over B, the
    # uncertainty of that prediction, and the priority the uncertainty strategy serves first.
    predicted_preference: Mapped[float | None] = mapped_column(Float, nullable=True)
    uncertainty: Mapped[float | None] = mapped_column(Float, nullable=True)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # AI triage: what the triage judge decided, and the judge's user (whose judgment is the
    # pair's label when the state is `judge`).
    triage: Mapped[TriageState] = mapped_column(enum_column(TriageState), default=TriageState.untriaged)
    triage_judge_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL", name="fk_comparisons_triage_judge_id_users"),
        nullable=True,
    )
    # Uniform in [0, 1), drawn when the pair is created: the random strategy walks from a random point.
    random_key: Mapped[float] = mapped_column(Float, default=random.random)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Assignment(Base):
    """A comparison shown to one rater, with the side each completion was shown on."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("comparison_id", "rater_id"),
        Index("ix_assignments_rater_status", "rater_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    a_on_left: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[AssignmentStatus] = mapped_column(enum_column(AssignmentStatus), default="active")
    leased_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Judgment(Base):
    """One rater's verdict on one comparison. Unique per (comparison, rater): retries are safe."""

    __tablename__ = "judgments"
    __table_args__ = (
        UniqueConstraint("comparison_id", "rater_id"),
        CheckConstraint("strength BETWEEN 0 AND 2", name="strength_range"),
        Index("ix_judgments_rater_created", "rater_id", "created_at"),
        # A rater's median time per judgment is read from the middle of this index.
        Index("ix_judgments_project_rater_time", "project_id", "rater_id", "time_spent_ms"),
        # The few edit judgments (app/services/writing/submit.py), which every claim and progress
        # count checks pairs against (NOT_AN_EDIT), without reading the others.
        Index(
            "ix_judgments_edits",
            "comparison_id",
            postgresql_where=text("source = 'edit'"),
            sqlite_where=text("source = 'edit'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignments.id", ondelete="SET NULL"), nullable=True
    )
    choice: Mapped[Choice] = mapped_column(enum_column(Choice))
    # 0 for a tie, 1 "better", 2 "much better".
    strength: Mapped[int] = mapped_column(Integer)
    both_bad: Mapped[bool] = mapped_column(Boolean, default=False)
    flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    rationale: Mapped[str] = mapped_column(Text, default="")
    time_spent_ms: Mapped[int] = mapped_column(Integer, default=0)
    # Which completion was on the left when the rater decided (position-bias analysis).
    a_on_left: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[JudgmentSource] = mapped_column(enum_column(JudgmentSource), default="human")
    # AI judgments: the judge run that wrote them, and the judge's provenance (model version,
    # method, prompt template hash, the answers in both orders).
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL", use_alter=True, name="fk_judgments_run_id"),
        nullable=True,
    )
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
