from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import JSONType, UTCDateTime, enum_column, utcnow

# How long a shown pair stays reserved for its rater unless the project says otherwise.
DEFAULT_LEASE_SECONDS = 15 * 60
# The longest answer a writer may submit unless the project says otherwise.
DEFAULT_MAX_ANSWER_CHARS = 20_000


class Scale(enum.StrEnum):
    """How finely a rater can say which response is better."""

    five = "five"  # A much better, A better, tie, B better, B much better
    three = "three"  # A better, tie, B better
    two = "two"  # A, B (no tie)


class Visibility(enum.StrEnum):
    """Which raters a project takes judgments from."""

    open = "open"  # every rater
    members = "members"  # its members only: raters added one by one or through their groups


class SelectionStrategy(enum.StrEnum):
    """Which open pair a rater is served next (app/services/rating/assignment.py)."""

    arrival = "arrival"  # pairs with votes first, then the newest
    random = "random"  # a uniformly random open pair
    uncertainty = "uncertainty"  # the highest priority first (set by the latest `score` run)
    mix = "mix"  # uncertainty, except a `random_share` of claims served at random


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    instructions: Mapped[str] = mapped_column(Text, default="")  # markdown, shown to raters
    overlap: Mapped[int] = mapped_column(Integer, default=1)  # distinct raters per pair
    # Adaptive overlap: a pair whose votes split gets one more rater at a time, up to this many
    # (None or <= overlap: off). Votes are split while the largest group of identical choices
    # holds less than `split_threshold` of them.
    max_overlap: Mapped[int | None] = mapped_column(Integer, nullable=True)
    split_threshold: Mapped[float] = mapped_column(Float, default=0.66)
    # Share of claims that draw a gold pair (known answer) the rater has not seen yet.
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0)
    # The rubric or constitution an AI judge is prompted with (markdown); the instructions if empty.
    judge_rubric: Mapped[str] = mapped_column(Text, default="")
    # AI triage (app/services/triage/): the judge (a model version; None: off), the margin above
    # which its verdict, agreed in both orders, stands without humans, and the share of such
    # pairs still sent to humans as an audit of the judge.
    triage_model_id: Mapped[int | None] = mapped_column(
        ForeignKey(
            "model_versions.id",
            ondelete="SET NULL",
            use_alter=True,  # model versions belong to projects: the cycle is closed after both exist
            name="fk_projects_triage_model_id_model_versions",
        ),
        nullable=True,
    )
    triage_margin: Mapped[float] = mapped_column(Float, default=2.0)
    triage_audit_share: Mapped[float] = mapped_column(Float, default=0.1)
    scale: Mapped[Scale] = mapped_column(enum_column(Scale), default=Scale.five)
    flags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    rationale_required: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_seconds: Mapped[int] = mapped_column(Integer, default=DEFAULT_LEASE_SECONDS)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    visibility: Mapped[Visibility] = mapped_column(enum_column(Visibility), default=Visibility.open)
    selection_strategy: Mapped[SelectionStrategy] = mapped_column(
        enum_column(SelectionStrategy), default=SelectionStrategy.arrival
    )
    # Under `mix`: the share of claims served a random open pair (an unbiased sample to measure on).
    random_share: Mapped[float] = mapped_column(Float, default=0.2)
    # The task kinds raters get here and their weights ({kind: weight}, app/task_kinds.py).
    task_mix: Mapped[dict[str, Any]] = mapped_column(JSONType, default=lambda: {"compare": 1.0})
    # Writing: raters per writing task, reviewers per written demonstration, the length guidance
    # shown to writers (words; None: none) and the hard limit on an answer (characters).
    writing_overlap: Mapped[int] = mapped_column(Integer, default=1)
    review_overlap: Mapped[int] = mapped_column(Integer, default=1)
    min_words: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_words: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_answer_chars: Mapped[int] = mapped_column(Integer, default=DEFAULT_MAX_ANSWER_CHARS)
    # Ranking: completions per ranking task (3..9).
    rank_k: Mapped[int] = mapped_column(Integer, default=4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
