"""Assignment of pairs to raters: claims with leases, the gold draw, the pair as shown, and
what is left for a rater.

* A rater never gets the same comparison twice (assignments are unique per comparison and rater);
  a rater who comes back while holding an unexpired lease gets the same pair again.
* Leases expire, so abandoned pairs return to the pool; a rater's own expired lease is renewed
  while the pair still has a free slot.
* On PostgreSQL, claiming locks the comparison row with ``FOR UPDATE SKIP LOCKED``: concurrent
  raters skip each other's candidate instead of queueing on it, and the slot count is re-read
  under the lock, so a pair can never be handed out beyond its overlap. On SQLite every
  transaction begins IMMEDIATE (app/db.py), which serialises claims.
* Left/right order is drawn per assignment and stored (app/services/rating/judgments.py reads a
  pick through it).
* Gold pairs (a known answer) are mixed in: with probability ``project.gold_rate`` a claim first
  draws, at random, a gold pair the rater has not seen. Gold pairs are shown exactly like the
  others, are never limited by the overlap (every rater may meet each once) and are offered only
  through that draw.
* Pairs that AI triage gave to the project's judge (app/services/triage/) are never served; the
  audited ones are served like any other, and come first under the uncertainty order (triage
  gives them a priority above every uncertainty, and score runs leave it).
* Which open pair comes next is the project's selection strategy. Every strategy finishes pairs
  that already have votes first (judgment_count descending), then: ``arrival`` the newest pair
  (id descending); ``uncertainty`` the highest ``priority`` (written by the latest score run,
  app/services/runs/scores.py; a pair never scored has priority 0, so it comes after the scored
  ones, newest first); ``random`` walks down from a random point of the pairs' ``random_key``
  (drawn uniformly when a pair is made), wrapping round to the top, so each open pair is about
  equally likely; ``mix`` serves a random pair with probability ``random_share`` and the
  uncertainty order otherwise. Each order is one index range read backwards
  (ix_comparisons_open, ix_comparisons_priority, ix_comparisons_random) that stops at the first
  free pair, under the same conditions and the same ``SKIP LOCKED`` lock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import (
    Boolean,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    exists,
    func,
    insert,
    literal,
    select,
    true,
)
from sqlalchemy.orm import Session, aliased

from app.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    ComparisonKind,
    Completion,
    Judgment,
    Project,
    Prompt,
    SelectionStrategy,
)
from app.models.types import UTCDateTime, utcnow
from app.services.rating.common import (
    NOT_AN_EDIT,
    ROOM_FOR_RATER,
    active_leases,
    has_room,
    known_no_lease,
    lock_comparison,
    max_overlap,
    require_rater,
)
from app.services.triage.queue import IN_HUMAN_QUEUE

# Candidate pairs to try per request before concluding that nothing is free right now.
MAX_CLAIM_ATTEMPTS = 8
# "Left for you" is counted up to this many pairs; beyond, the workbench shows "1000+".
REMAINING_CAP = 1000


@dataclass(frozen=True)
class PairView:
    """What the workbench shows: the sides are already in display order."""

    assignment_id: int
    comparison_id: int
    messages: list[dict[str, str]]
    left_text: str
    right_text: str
    lease_expires_at: datetime


@dataclass(frozen=True)
class Progress:
    done_today: int
    done_total: int
    remaining: int  # at most REMAINING_CAP + 1: counting further would scan the whole project

    @property
    def remaining_label(self) -> str:
        return f"{REMAINING_CAP}+" if self.remaining > REMAINING_CAP else str(self.remaining)


_seen_by_rater = aliased(Assignment)


# The free pairs for a rater: not seen by them, judgments + active leases under the overlap.
_OPEN_FOR_RATER = select(Comparison.id).where(
    Comparison.project_id == bindparam("project_id"),
    # The index range: no pair needs more than the project's maximum overlap.
    Comparison.judgment_count < bindparam("max_overlap"),
    Comparison.kind == ComparisonKind.regular,
    IN_HUMAN_QUEUE,  # not a pair AI triage gave to its judge
    NOT_AN_EDIT,  # not an improvement's edit pair
    ~exists().where(
        _seen_by_rater.comparison_id == Comparison.id,
        _seen_by_rater.rater_id == bindparam("rater_id"),
    ),
    Comparison.judgment_count + active_leases(Comparison.id) < bindparam("overlap") + Comparison.extra_raters,
)


def _first(query: Select[int]) -> Select[int]:
    return query.limit(1).with_for_update(skip_locked=True, of=Comparison)


# Finish pairs that already have votes before opening new ones, then by the strategy's key. Each
# matches one index read backwards: ix_comparisons_open, ix_comparisons_priority, ix_comparisons_random.
_BY_ARRIVAL = _first(_OPEN_FOR_RATER.order_by(Comparison.judgment_count.desc(), Comparison.id.desc()))
_BY_PRIORITY = _first(
    _OPEN_FOR_RATER.order_by(
        Comparison.judgment_count.desc(), Comparison.priority.desc(), Comparison.id.desc()
    )
)
_RANDOM_ORDER = (Comparison.judgment_count.desc(), Comparison.random_key.desc())
_BY_RANDOM_BELOW = _first(
    _OPEN_FOR_RATER.where(Comparison.random_key < bindparam("start")).order_by(*_RANDOM_ORDER)
)
_BY_RANDOM_WRAP = _first(_OPEN_FOR_RATER.order_by(*_RANDOM_ORDER))


def _walks(project: Project) -> tuple[tuple[Select[int], ...], dict[str, float]]:
    """The statements to try in turn for the project's strategy, and their extra parameters."""
    strategy = project.selection_strategy
    if strategy == SelectionStrategy.mix:
        strategy = (
            SelectionStrategy.random
            if random.random() < project.random_share
            else SelectionStrategy.uncertainty
        )
    if strategy == SelectionStrategy.uncertainty:
        return (_BY_PRIORITY,), {}
    if strategy == SelectionStrategy.random:
        return (_BY_RANDOM_BELOW, _BY_RANDOM_WRAP), {"start": random.random()}
    return (_BY_ARRIVAL,), {}


# A gold pair the rater has not seen, drawn at random (gold sets are small).
_GOLD_CANDIDATE = (
    select(Comparison.id)
    .where(
        Comparison.project_id == bindparam("project_id"),
        Comparison.kind == ComparisonKind.gold,
        ~exists().where(
            _seen_by_rater.comparison_id == Comparison.id,
            _seen_by_rater.rater_id == bindparam("rater_id"),
        ),
    )
    .order_by(func.random())
    .limit(1)
)


def current_lease(
    session: Session, *, project: Project, rater_id: int, now: datetime | None = None
) -> Assignment | None:
    """The rater's unexpired pair in this project, if they hold one."""
    now = now or utcnow()
    return session.scalars(
        select(Assignment)
        .where(
            Assignment.rater_id == rater_id,
            Assignment.project_id == project.id,
            Assignment.status == AssignmentStatus.active,
            Assignment.lease_expires_at > now,
        )
        .order_by(Assignment.id)
        .limit(1)
    ).first()


_ASSIGN_COLUMNS = (
    "comparison_id",
    "rater_id",
    "project_id",
    "a_on_left",
    "status",
    "leased_at",
    "lease_expires_at",
)
# Lease a locked comparison to the rater if it still has room (`ROOM_FOR_RATER`, counted afresh
# by this statement): the recount and the insert in one round trip; no row when it is full.
_ASSIGN_IF_ROOM = select(Assignment).from_statement(
    insert(cast(Table, Assignment.__table__))
    .from_select(
        _ASSIGN_COLUMNS,
        select(
            Comparison.id,
            bindparam("rater_id", type_=Integer),
            bindparam("project_id", type_=Integer),
            bindparam("a_on_left", type_=Boolean),
            literal(AssignmentStatus.active.value, String),
            bindparam("leased_at", type_=UTCDateTime),
            bindparam("lease_expires_at", type_=UTCDateTime),
        ).where(Comparison.id == bindparam("comparison_id"), ROOM_FOR_RATER),
    )
    .returning(*Assignment.__table__.c)
)


def _held(session: Session, project: Project, rater_id: int, now: datetime) -> Assignment | None:
    """The rater's lease here, read once: an unexpired one as it is, else the first expired one
    that can be renewed (renewed); expired ones that cannot are marked lapsed."""
    own = session.scalars(
        select(Assignment)
        .where(
            Assignment.rater_id == rater_id,
            Assignment.project_id == project.id,
            Assignment.status == AssignmentStatus.active,
        )
        .order_by(Assignment.id)
    ).all()
    for assignment in own:
        if assignment.lease_expires_at > now:
            return assignment
    for assignment in own:
        # An expired lease of this rater's: renew it if the pair still has room.
        lock_comparison(session, assignment.comparison_id)
        if has_room(session, project, assignment.comparison_id, now, rater_id):
            assignment.leased_at = now
            assignment.lease_expires_at = now + timedelta(seconds=project.lease_seconds)
            session.flush()
            return assignment
        assignment.status = AssignmentStatus.lapsed
    if own:
        session.flush()
    return None


def claim_next(
    session: Session, *, project: Project, rater_id: int, now: datetime | None = None
) -> Assignment | None:
    """The rater's current pair, or a newly claimed one; None when nothing is left for them.

    A claim with nothing held is three statements: the rater's leases, the candidate (locked),
    and the recount with the insert (`_ASSIGN_IF_ROOM`); more only when a candidate filled up
    meanwhile, when the gold draw runs, or when a random walk wraps round.
    """
    require_rater(session, project, rater_id)
    now = now or utcnow()
    if not known_no_lease(session, project.id, rater_id):
        held = _held(session, project, rater_id, now)
        if held is not None:
            return held
    params = {
        "project_id": project.id,
        "overlap": project.overlap,
        "max_overlap": max_overlap(project),
        "rater_id": rater_id,
        "now": now,
    }

    def assign(comparison_id: int) -> Assignment | None:
        """Lease the candidate (locked by the query that found it) if it still has room."""
        values = {
            **params,
            "comparison_id": comparison_id,
            "a_on_left": random.random() < 0.5,
            "leased_at": now,
            "lease_expires_at": now + timedelta(seconds=project.lease_seconds),
        }
        return session.scalars(_ASSIGN_IF_ROOM, values).one_or_none()

    if project.gold_rate > 0 and random.random() < project.gold_rate:
        gold_id = session.execute(_GOLD_CANDIDATE, params).scalar_one_or_none()
        if gold_id is not None:
            gold = assign(gold_id)  # gold pairs are never full: no lock needed
            if gold is not None:
                return gold

    walks, extra = _walks(project)
    skipped: list[int] = []
    for _ in range(MAX_CLAIM_ATTEMPTS):
        comparison_id = None
        for walk in walks:
            query = walk.where(Comparison.id.not_in(skipped)) if skipped else walk
            comparison_id = session.execute(query, {**params, **extra}).scalar_one_or_none()
            if comparison_id is not None:
                break
        if comparison_id is None:
            return None
        # The candidate query's snapshot may predate another rater's claim: the insert recounts.
        assignment = assign(comparison_id)
        if assignment is not None:
            return assignment
        skipped.append(comparison_id)
    return None


# The hot-path statements are built once, with bound parameters: building a statement costs
# more CPU than PostgreSQL spends answering it.
_comp_a, _comp_b = aliased(Completion), aliased(Completion)
_PAIR_TEXTS = (
    select(Prompt.messages, _comp_a.text, _comp_b.text)
    .select_from(Comparison)
    .join(Prompt, Prompt.id == Comparison.prompt_id)
    .join(_comp_a, _comp_a.id == Comparison.completion_a_id)
    .join(_comp_b, _comp_b.id == Comparison.completion_b_id)
    .where(Comparison.id == bindparam("comparison_id"))
)


def pair_view(session: Session, assignment: Assignment) -> PairView:
    messages, text_a, text_b = session.execute(_PAIR_TEXTS, {"comparison_id": assignment.comparison_id}).one()
    return _view(assignment, messages, text_a, text_b)


def _view(assignment: Assignment, messages: list[dict[str, str]], text_a: str, text_b: str) -> PairView:
    """The pair as the rater sees it: the texts in the lease's left/right order."""
    left, right = (text_a, text_b) if assignment.a_on_left else (text_b, text_a)
    return PairView(
        assignment_id=assignment.id,
        comparison_id=assignment.comparison_id,
        messages=messages,
        left_text=left,
        right_text=right,
        lease_expires_at=assignment.lease_expires_at,
    )


_DONE_COUNTS = (
    select(
        func.count().filter(Judgment.created_at >= bindparam("midnight")).label("today"),
        func.count().label("total"),
    )
    .where(Judgment.rater_id == bindparam("rater_id"), Judgment.project_id == bindparam("project_id"))
    .subquery()
)
_seen = aliased(Assignment)
_REMAINING = select(func.count()).select_from(
    select(Comparison.id)
    .where(
        Comparison.project_id == bindparam("project_id"),
        Comparison.judgment_count < bindparam("max_overlap"),
        Comparison.kind == ComparisonKind.regular,
        IN_HUMAN_QUEUE,
        NOT_AN_EDIT,
        Comparison.judgment_count < bindparam("overlap") + Comparison.extra_raters,
        ~exists().where(
            _seen.comparison_id == Comparison.id,
            _seen.rater_id == bindparam("rater_id"),
            _seen.status != AssignmentStatus.active,
        ),
    )
    .limit(REMAINING_CAP + 1)
    .subquery()
)
# Both in one statement: the done counts (one row) beside the capped count of what is left.
_PROGRESS = select(_DONE_COUNTS.c.today, _DONE_COUNTS.c.total, _REMAINING.scalar_subquery())


def progress(session: Session, *, project: Project, rater_id: int, now: datetime | None = None) -> Progress:
    """Judgments today (UTC) and in total, and pairs this rater could still be given."""
    now = now or utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    params = {
        "project_id": project.id,
        "rater_id": rater_id,
        "overlap": project.overlap,
        "max_overlap": max_overlap(project),
    }
    done_today, done_total, remaining = session.execute(_PROGRESS, {**params, "midnight": midnight}).one()
    return Progress(done_today=done_today, done_total=done_total, remaining=remaining)


# The pair's texts and the rater's progress in one statement (the workbench shows both).
_PAIR_AND_PROGRESS = (
    select(
        Prompt.messages,
        _comp_a.text,
        _comp_b.text,
        _DONE_COUNTS.c.today,
        _DONE_COUNTS.c.total,
        _REMAINING.scalar_subquery(),
    )
    .select_from(Comparison)
    .join(Prompt, Prompt.id == Comparison.prompt_id)
    .join(_comp_a, _comp_a.id == Comparison.completion_a_id)
    .join(_comp_b, _comp_b.id == Comparison.completion_b_id)
    .join(_DONE_COUNTS, true())
    .where(Comparison.id == bindparam("comparison_id"))
)


def pair_with_progress(
    session: Session, assignment: Assignment, *, project: Project, rater_id: int, now: datetime | None = None
) -> tuple[PairView, Progress]:
    """`pair_view` and `progress` in one round trip."""
    now = now or utcnow()
    params = {
        "comparison_id": assignment.comparison_id,
        "project_id": project.id,
        "rater_id": rater_id,
        "overlap": project.overlap,
        "max_overlap": max_overlap(project),
        "midnight": now.replace(hour=0, minute=0, second=0, microsecond=0),
    }
    messages, text_a, text_b, today, total, remaining = session.execute(_PAIR_AND_PROGRESS, params).one()
    return _view(assignment, messages, text_a, text_b), Progress(
        done_today=today, done_total=total, remaining=remaining
    )
