"""Ranking tasks: K completions of one prompt put in order, claimed like pairs.

* A ranking needs ``project.overlap + ranking.extra_raters`` distinct raters (up to
  ``project.max_overlap``); a slot is held by a judgment or an active lease, as for pairs
  (app/services/rating/common.py), and whoever decides on a slot locks the ranking row first and
  re-reads the count under the lock.
* A rater never gets the same ranking twice; one who comes back while holding an unexpired lease
  gets the same ranking again, and their own expired lease is renewed while it has room.
* On PostgreSQL the claim locks the candidate with ``FOR UPDATE SKIP LOCKED``; on SQLite every
  transaction begins IMMEDIATE (app/db.py), which serialises claims.
* The order the completions are shown in is drawn per assignment and stored
  (`RankingAssignment.display_order`: positions in ``completion_ids``, as shown); the judgments
  (app/services/rating/ranking_judgments.py) read the rater's ranks back through it.
* Gold rankings (a known order) are mixed in like gold pairs: with probability
  ``project.gold_rate`` a claim first draws a gold ranking the rater has not seen; they are never
  limited by the overlap and are offered only through that draw.
* Only the project's raters claim (`require_rater`, checked on every call).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.orm import Session, aliased

from app.models import (
    AssignmentStatus,
    ComparisonKind,
    Completion,
    Project,
    Prompt,
    Ranking,
    RankingAssignment,
    RankingJudgment,
)
from app.models.types import utcnow
from app.services.rating.assignment import MAX_CLAIM_ATTEMPTS, REMAINING_CAP, Progress
from app.services.rating.common import max_overlap, require_rater

# Display letters of a ranking's responses, in the order shown (K is at most 9).
LETTERS = "ABCDEFGHI"
MIN_RANK_K, MAX_RANK_K = 3, 9


@dataclass(frozen=True)
class RankedResponse:
    letter: str
    text: str


@dataclass(frozen=True)
class RankingView:
    """What the ranking workbench shows: the responses in display order, lettered A, B, ..."""

    assignment_id: int
    ranking_id: int
    messages: list[dict[str, str]]
    responses: list[RankedResponse]
    lease_expires_at: datetime


_lease = aliased(RankingAssignment)


def _active_leases(ranking_id, *, except_rater: bool = False):  # type: ignore[no-untyped-def]
    query = select(func.count()).where(
        _lease.ranking_id == ranking_id,
        _lease.status == AssignmentStatus.active,
        _lease.lease_expires_at > bindparam("now"),
    )
    if except_rater:
        query = query.where(_lease.rater_id != bindparam("rater_id"))
    return query.scalar_subquery()


_SLOTS_TAKEN = select(
    Ranking.judgment_count + _active_leases(bindparam("ranking_id"), except_rater=True),
    Ranking.extra_raters,
    Ranking.kind,
).where(Ranking.id == bindparam("ranking_id"))


def has_room(session: Session, project: Project, ranking_id: int, now: datetime, rater_id: int) -> bool:
    """Whether the ranking can take this rater's order, read fresh (call with the row locked)."""
    params = {"ranking_id": ranking_id, "now": now, "rater_id": rater_id}
    taken, extra, kind = session.execute(_SLOTS_TAKEN, params).one()
    if kind == ComparisonKind.gold:
        return True
    return int(taken) < project.overlap + int(extra)


def lock_ranking(session: Session, ranking_id: int) -> None:
    session.execute(select(Ranking.id).where(Ranking.id == ranking_id).with_for_update()).scalar_one()


_seen_by_rater = aliased(RankingAssignment)

# The next free ranking for a rater: not seen by them, judgments + active leases under the overlap.
_CANDIDATES = (
    select(Ranking.id)
    .where(
        Ranking.project_id == bindparam("project_id"),
        Ranking.judgment_count < bindparam("max_overlap"),
        Ranking.kind == ComparisonKind.regular,
        ~exists().where(
            _seen_by_rater.ranking_id == Ranking.id,
            _seen_by_rater.rater_id == bindparam("rater_id"),
        ),
        Ranking.judgment_count + _active_leases(Ranking.id) < bindparam("overlap") + Ranking.extra_raters,
    )
    # Finish rankings that already have orders first, newest first (ix_rankings_open backwards).
    .order_by(Ranking.judgment_count.desc(), Ranking.id.desc())
    .limit(1)
    .with_for_update(skip_locked=True, of=Ranking)
)

_GOLD_CANDIDATE = (
    select(Ranking.id)
    .where(
        Ranking.project_id == bindparam("project_id"),
        Ranking.kind == ComparisonKind.gold,
        ~exists().where(
            _seen_by_rater.ranking_id == Ranking.id,
            _seen_by_rater.rater_id == bindparam("rater_id"),
        ),
    )
    .order_by(func.random())
    .limit(1)
)


def current_ranking_lease(
    session: Session, *, project: Project, rater_id: int, now: datetime | None = None
) -> RankingAssignment | None:
    """The rater's unexpired ranking lease in this project (what a reload shows again), or None."""
    now = now or utcnow()
    return session.scalars(
        select(RankingAssignment)
        .where(
            RankingAssignment.rater_id == rater_id,
            RankingAssignment.project_id == project.id,
            RankingAssignment.status == AssignmentStatus.active,
            RankingAssignment.lease_expires_at > now,
        )
        .order_by(RankingAssignment.id)
        .limit(1)
    ).one_or_none()


def claim_next_ranking(
    session: Session, *, project: Project, rater_id: int, now: datetime | None = None
) -> RankingAssignment | None:
    """The rater's current ranking, or a newly claimed one; None when nothing is left for them."""
    require_rater(session, project, rater_id)
    now = now or utcnow()
    lease = timedelta(seconds=project.lease_seconds)

    own = session.scalars(
        select(RankingAssignment)
        .where(
            RankingAssignment.rater_id == rater_id,
            RankingAssignment.project_id == project.id,
            RankingAssignment.status == AssignmentStatus.active,
        )
        .order_by(RankingAssignment.id)
    ).all()
    for assignment in own:  # an unexpired lease comes before renewing an expired one
        if assignment.lease_expires_at > now:
            return assignment
    for assignment in own:
        lock_ranking(session, assignment.ranking_id)
        if has_room(session, project, assignment.ranking_id, now, rater_id):
            assignment.leased_at = now
            assignment.lease_expires_at = now + lease
            session.flush()
            return assignment
        assignment.status = AssignmentStatus.lapsed
    session.flush()

    def assign(ranking_id: int) -> RankingAssignment:
        size = len(
            session.execute(select(Ranking.completion_ids).where(Ranking.id == ranking_id)).scalar_one()
        )
        order = list(range(size))
        random.shuffle(order)
        assignment = RankingAssignment(
            ranking_id=ranking_id,
            rater_id=rater_id,
            project_id=project.id,
            display_order=order,
            status=AssignmentStatus.active,
            leased_at=now,
            lease_expires_at=now + lease,
        )
        session.add(assignment)
        session.flush()
        return assignment

    if project.gold_rate > 0 and random.random() < project.gold_rate:
        gold_id = session.execute(
            _GOLD_CANDIDATE, {"project_id": project.id, "rater_id": rater_id}
        ).scalar_one_or_none()
        if gold_id is not None:
            return assign(gold_id)

    params = {
        "project_id": project.id,
        "overlap": project.overlap,
        "max_overlap": max_overlap(project),
        "rater_id": rater_id,
        "now": now,
    }
    skipped: list[int] = []
    for _ in range(MAX_CLAIM_ATTEMPTS):
        query = _CANDIDATES.where(Ranking.id.not_in(skipped)) if skipped else _CANDIDATES
        ranking_id = session.execute(query, params).scalar_one_or_none()
        if ranking_id is None:
            return None
        # The candidate query's snapshot may predate another rater's claim: recount under lock.
        if not has_room(session, project, ranking_id, now, rater_id):
            skipped.append(ranking_id)
            continue
        return assign(ranking_id)
    return None


_RANKING_TEXTS = (
    select(Prompt.messages, Ranking.completion_ids)
    .join(Prompt, Prompt.id == Ranking.prompt_id)
    .where(Ranking.id == bindparam("ranking_id"))
)
_COMPLETION_TEXTS = select(Completion.id, Completion.text).where(
    Completion.id.in_(bindparam("ids", expanding=True))
)


def ranking_view(session: Session, assignment: RankingAssignment) -> RankingView:
    messages, completion_ids = session.execute(_RANKING_TEXTS, {"ranking_id": assignment.ranking_id}).one()
    texts = {cid: text for cid, text in session.execute(_COMPLETION_TEXTS, {"ids": list(completion_ids)})}
    responses = [
        RankedResponse(letter=LETTERS[shown], text=texts[completion_ids[position]])
        for shown, position in enumerate(assignment.display_order)
    ]
    return RankingView(
        assignment_id=assignment.id,
        ranking_id=assignment.ranking_id,
        messages=messages,
        responses=responses,
        lease_expires_at=assignment.lease_expires_at,
    )


_DONE_COUNTS = select(
    func.count().filter(RankingJudgment.created_at >= bindparam("midnight")),
    func.count(),
).where(
    RankingJudgment.rater_id == bindparam("rater_id"),
    RankingJudgment.project_id == bindparam("project_id"),
)
_seen = aliased(RankingAssignment)
_REMAINING = select(func.count()).select_from(
    select(Ranking.id)
    .where(
        Ranking.project_id == bindparam("project_id"),
        Ranking.judgment_count < bindparam("max_overlap"),
        Ranking.kind == ComparisonKind.regular,
        Ranking.judgment_count < bindparam("overlap") + Ranking.extra_raters,
        ~exists().where(
            _seen.ranking_id == Ranking.id,
            _seen.rater_id == bindparam("rater_id"),
            _seen.status != AssignmentStatus.active,
        ),
    )
    .limit(REMAINING_CAP + 1)
    .subquery()
)


def ranking_progress(
    session: Session, *, project: Project, rater_id: int, now: datetime | None = None
) -> Progress:
    """Rankings ordered today (UTC) and in total, and rankings this rater could still be given."""
    now = now or utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    params = {
        "project_id": project.id,
        "rater_id": rater_id,
        "overlap": project.overlap,
        "max_overlap": max_overlap(project),
    }
    done_today, done_total = session.execute(_DONE_COUNTS, {**params, "midnight": midnight}).one()
    remaining = session.execute(_REMAINING, params).scalar_one()
    return Progress(done_today=done_today, done_total=done_total, remaining=remaining)


def has_ranking_work(
    session: Session, *, project: Project, rater_id: int, now: datetime | None = None
) -> bool:
    """Whether a claim could give this rater a ranking now (or they hold one)."""
    return ranking_progress(session, project=project, rater_id=rater_id, now=now).remaining > 0
