"""What assignment and judgments share: the errors a rater sees, the answer's shape and scales,
the membership check, and the count of a pair's taken slots.

* A comparison needs ``project.overlap`` distinct raters. A slot is held either by a judgment or
  by an *active lease* (an assignment shown to a rater whose ``lease_expires_at`` is in the
  future). A comparison is offered only while judgments + active leases < overlap.
* Adaptive overlap: a regular pair needs ``project.overlap + comparison.extra_raters`` raters,
  up to ``project.max_overlap`` raters in all (app/services/rating/judgments.py widens it).
* Gold pairs are never limited by the overlap: every rater may meet each once.
* Whoever decides on a slot locks the comparison row first (`lock_comparison`) and then re-reads
  the count (`has_room`): on PostgreSQL the row lock, on SQLite the IMMEDIATE transaction
  (app/db.py), so a pair can never be handed out or filled beyond its overlap.
* Only the project's raters (app/services/membership.py) claim, submit, skip and undo: each of
  these checks it again (`require_rater`), so a rater removed from a members-only project while
  holding a pair is refused (404, as for a project that does not exist) even with the old
  assignment's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, bindparam, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    ComparisonKind,
    Judgment,
    JudgmentSource,
    Project,
    Scale,
)
from app.services.membership import may_rate

SCALE_PICKS: dict[Scale, tuple[int, ...]] = {
    Scale.five: (-2, -1, 0, 1, 2),
    Scale.three: (-1, 0, 1),
    Scale.two: (-1, 1),
}
# Not the pair an improved demonstration stored (the edit beats the original, app/services/writing/
# submit.py): its writer's edit is its label, so raters are not asked to judge it again.
NOT_AN_EDIT: ColumnElement[bool] = ~exists().where(
    Judgment.comparison_id == Comparison.id, Judgment.source == JudgmentSource.edit
)
PICK_LABELS = {
    -2: "A is much better",
    -1: "A is better",
    0: "Tie",
    1: "B is better",
    2: "B is much better",
}


class RatingError(Exception):
    """A rater-facing problem; `str()` is shown to the rater as it is."""

    status_code = 400


class NotAssigned(RatingError):
    status_code = 404


class NotAMember(RatingError):
    """The rater may not rate in this project (any more): answered like a missing project."""

    status_code = 404

    def __init__(self) -> None:
        super().__init__("No active project with this name.")


def require_rater(session: Session, project: Project, rater_id: int) -> None:
    if not may_rate(session, project, rater_id):
        raise NotAMember()


class PairFilled(RatingError):
    status_code = 409


class InvalidJudgment(RatingError):
    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class JudgmentInput:
    """A rater's answer; `pick` is None only for "both bad" given alone."""

    assignment_id: int
    pick: int | None
    both_bad: bool = False
    flags: tuple[str, ...] = ()
    rationale: str = ""


def max_overlap(project: Project) -> int:
    """The most raters a regular pair of this project can need (adaptive overlap included)."""
    return max(project.overlap, project.max_overlap or 0)


_lease = aliased(Assignment)


def active_leases(comparison_id, *, except_rater: bool = False):  # type: ignore[no-untyped-def]
    """Unexpired leases of a comparison (bound parameters `now`, and `rater_id` to exclude)."""
    query = select(func.count()).where(
        _lease.comparison_id == comparison_id,
        _lease.status == AssignmentStatus.active,
        _lease.lease_expires_at > bindparam("now"),
    )
    if except_rater:
        query = query.where(_lease.rater_id != bindparam("rater_id"))
    return query.scalar_subquery()


# Judgments plus other raters' active leases of one comparison, its extra raters and its kind.
_SLOTS_TAKEN = select(
    Comparison.judgment_count + active_leases(bindparam("comparison_id"), except_rater=True),
    Comparison.extra_raters,
    Comparison.kind,
).where(Comparison.id == bindparam("comparison_id"))


# The same test as a condition on a `Comparison` row (bound parameters `now`, `rater_id` and
# `overlap`): gold pairs always have room, a regular pair while judgments + other raters' active
# leases < overlap + extra raters. A statement that reads it decides on fresh counts only when it
# runs after the row is locked (a new statement sees what committed before the lock was granted).
ROOM_FOR_RATER: ColumnElement[bool] = or_(
    Comparison.kind == ComparisonKind.gold,
    Comparison.judgment_count + active_leases(Comparison.id, except_rater=True)
    < bindparam("overlap") + Comparison.extra_raters,
)


def has_room(session: Session, project: Project, comparison_id: int, now: datetime, rater_id: int) -> bool:
    """Whether the pair can take this rater's vote, read fresh (call with the row locked)."""
    params = {"comparison_id": comparison_id, "now": now, "rater_id": rater_id}
    taken, extra, kind = session.execute(_SLOTS_TAKEN, params).one()
    if kind == ComparisonKind.gold:
        return True
    return int(taken) < project.overlap + int(extra)


# The key of `session.info` under which a store notes that the rater holds no other lease.
_NO_LEASE = "rating_no_lease"


def note_no_lease(session: Session, project_id: int, rater_id: int) -> None:
    """Note, for the claim that follows in this transaction, that the rater holds no lease here
    (the store that closed theirs counted the others)."""
    session.info[_NO_LEASE] = (project_id, rater_id, session.get_transaction())


def known_no_lease(session: Session, project_id: int, rater_id: int) -> bool:
    """Whether a store in this transaction noted that the rater holds no lease here; the note is
    used once, and only in the transaction that made it."""
    note = session.info.pop(_NO_LEASE, None)
    return note is not None and note[:2] == (project_id, rater_id) and note[2] is session.get_transaction()


def lock_comparison(session: Session, comparison_id: int) -> None:
    session.execute(
        select(Comparison.id).where(Comparison.id == comparison_id).with_for_update()
    ).scalar_one()
