"""Running tallies of the judgments, kept by the database itself for the label-quality pages.

Triggers on ``judgments`` (migration ``0016_tallies``) add every inserted judgment and subtract
every deleted one (an update does both), in the transaction that writes it, whichever code
path wrote it: the rating routes, imports, AI judges, undo, cascades from a deleted
comparison, rater or project; a TRUNCATE of ``judgments`` empties them. The reports then read
a few thousand tally rows instead of aggregating every judgment per request. The code never
writes these tables (`rlhf db tallies --repair` rebuilds them: app/services/tallies.py).

* ``comparison_tallies``: per comparison and source, the votes per choice and per signed
  strength (-2..2), with the two completions' lengths in characters (completions never change).
* ``rater_tallies``: per project, rater and source, the vote counts of the quality report.
* ``rater_hours``: per project, rater, source and UTC clock hour, the judgments submitted.
* ``rater_flag_tallies``: per project, rater, source and flag, the judgments carrying it.
* ``rater_pair_tallies``: per project and ordered pair of human raters, the pairs of their votes
  on the same comparison and how many agree (same choice), counted once per pair of votes under
  the rater of the later vote (the higher judgment id).

A row whose counts fall to zero stays (readers skip it). On PostgreSQL the writers of one
comparison are serialised by its tally row (taken first, in comparison order), so two raters
voting on one pair at the same moment each count their pair of votes exactly once. On SQLite
writes are serial. ``tests/services/test_tallies.py`` checks every table against a recount.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base

_SOURCE = 16  # judgments.source: human, ai, edit


def _count() -> Mapped[int]:
    return mapped_column(Integer, default=0)


class _SignedCounts:
    """Votes per signed strength: -2 (B much better) .. +2 (A much better), 0 a tie."""

    s_m2: Mapped[int] = _count()
    s_m1: Mapped[int] = _count()
    s_0: Mapped[int] = _count()
    s_p1: Mapped[int] = _count()
    s_p2: Mapped[int] = _count()


class ComparisonTally(_SignedCounts, Base):
    __tablename__ = "comparison_tallies"
    __table_args__ = (Index("ix_comparison_tallies_project", "project_id", "source"),)

    comparison_id: Mapped[int] = mapped_column(
        ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(_SOURCE), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    votes: Mapped[int] = _count()
    a: Mapped[int] = _count()
    b: Mapped[int] = _count()
    tie: Mapped[int] = _count()
    chars_a: Mapped[int] = _count()  # length of completion A in characters
    chars_b: Mapped[int] = _count()


class RaterTally(_SignedCounts, Base):
    __tablename__ = "rater_tallies"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(_SOURCE), primary_key=True)
    judgments: Mapped[int] = _count()
    ties: Mapped[int] = _count()
    both_bad: Mapped[int] = _count()
    non_tie: Mapped[int] = _count()
    left_picks: Mapped[int] = _count()  # non-tie votes for the completion shown on the left
    flagged: Mapped[int] = _count()  # judgments with at least one flag


class RaterHour(Base):
    __tablename__ = "rater_hours"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(_SOURCE), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(), primary_key=True)  # UTC, naive
    judgments: Mapped[int] = _count()


class RaterFlagTally(Base):
    __tablename__ = "rater_flag_tallies"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(_SOURCE), primary_key=True)
    flag: Mapped[str] = mapped_column(String(200), primary_key=True)
    judgments: Mapped[int] = _count()


class RaterPairTally(Base):
    __tablename__ = "rater_pair_tallies"
    __table_args__ = (Index("ix_rater_pair_tallies_other", "project_id", "other_id"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    other_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    pairs: Mapped[int] = _count()
    agreeing: Mapped[int] = _count()
