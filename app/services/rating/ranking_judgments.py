"""The orders raters return for rankings: stored once per ranking and rater, adaptive overlap
widened when raters disagree, skips, and undo.

* The rater answers in display terms: one rank per response *as shown* (1 = best, equal ranks a
  tie, dense: 1, 2, 2, 3) and optionally the rank above the "all bad" line. The ranks are stored
  aligned with ``ranking.completion_ids`` through the assignment's stored display order, so a
  stored order always names the right completions.
* ``cutoff_rank``: responses ranked below it (rank > cutoff_rank) are unacceptable; 0 means all
  of them, None that no line was drawn.
* Judgments are unique per (ranking, rater): a double-clicked or retried submit returns the
  stored order instead of writing a second one. A late submit is kept while the ranking has a
  free slot, else refused with `PairFilled`.
* Adaptive overlap: when a regular ranking's last needed order arrives, the orders are split when
  the pairs they imply agree too little: for each pair of completions, the share of raters on the
  most common side (better, worse or tie), averaged over the pairs, is below
  ``project.split_threshold``. Then ``extra_raters`` grows by one, up to ``project.max_overlap``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from app.db import insert_ignoring_conflicts
from app.models import (
    AssignmentStatus,
    ComparisonKind,
    JudgmentSource,
    Project,
    Ranking,
    RankingAssignment,
    RankingJudgment,
)
from app.models.types import utcnow
from app.services.rating.common import InvalidJudgment, NotAssigned, PairFilled, max_overlap, require_rater
from app.services.rating.judgments import MAX_TIME_SPENT_MS
from app.services.rating.ranking import LETTERS, has_room, lock_ranking


@dataclass(frozen=True)
class RankingInput:
    """A rater's order: ``ranks[i]`` is the rank of the i-th response as shown (1 = best)."""

    assignment_id: int
    ranks: tuple[int, ...]
    cutoff_rank: int | None = None


def validate_ranks(ranks: tuple[int, ...] | list[int], cutoff_rank: int | None, size: int) -> None:
    """Raise `InvalidJudgment` naming the field unless these are dense ranks of `size` responses
    (1 = best, equal = tie, no gaps) with a cut-off between 0 and the lowest rank."""
    if len(ranks) != size:
        raise InvalidJudgment("ranks", f"give one rank for each of the {size} responses (got {len(ranks)})")
    if any(not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= size for rank in ranks):
        raise InvalidJudgment("ranks", f"each rank is a whole number from 1 (best) to {size}")
    if set(ranks) != set(range(1, max(ranks) + 1)):
        raise InvalidJudgment("ranks", "ranks run 1, 2, 3 ... without gaps; equal ranks are ties")
    if cutoff_rank is not None and not 0 <= cutoff_rank <= max(ranks):
        raise InvalidJudgment("cutoff_rank", f"the all-bad line sits after a rank from 0 to {max(ranks)}")


ORDER_SEPARATORS = " ,>"


def parse_order(text: str, size: int) -> tuple[tuple[int, ...], int | None]:
    """The order notation -> (rank of each response as shown, cut-off rank).

    Letters name the responses as shown (A, B, ...), best first; ``=`` between two letters ties
    them; ``|`` marks the "all bad" line (what follows it is unacceptable); spaces, commas and
    ``>`` separate. ``C=A D | B``: C and A tie for rank 1, D is rank 2, then the line (cut-off
    rank 2), B is rank 3 and unacceptable. Raises `InvalidJudgment` on the field ``order``."""
    letters = LETTERS[:size]
    ranks: dict[str, int] = {}
    cutoff: int | None = None
    rank = 0
    tie_next = False
    for char in text.strip().upper():
        if char in ORDER_SEPARATORS:
            continue
        if char == "=":
            if rank == 0 or tie_next:
                raise InvalidJudgment("order", "'=' goes between two letters (C=A ties C and A)")
            tie_next = True
        elif char == "|":
            if cutoff is not None:
                raise InvalidJudgment("order", "draw the all-bad line '|' once")
            if tie_next:
                raise InvalidJudgment("order", "the all-bad line cannot split a tie")
            cutoff = rank
        elif char in letters:
            if char in ranks:
                raise InvalidJudgment("order", f"{char} appears twice")
            if not tie_next:
                rank += 1
            ranks[char] = rank
            tie_next = False
        else:
            raise InvalidJudgment(
                "order",
                f"{char!r} is not one of the responses {', '.join(letters)} (or = for a tie, | for the line)",
            )
    if tie_next:
        raise InvalidJudgment("order", "'=' goes between two letters (C=A ties C and A)")
    missing = [letter for letter in letters if letter not in ranks]
    if missing:
        raise InvalidJudgment("order", f"put every response in the order; missing: {', '.join(missing)}")
    return tuple(ranks[letter] for letter in letters), cutoff


def format_order(ranks: tuple[int, ...] | list[int], cutoff_rank: int | None) -> str:
    """Ranks of the responses as shown -> the order notation (`parse_order`'s inverse)."""
    parts: list[str] = []
    for rank in range(1, max(ranks, default=0) + 1):
        if cutoff_rank is not None and rank == cutoff_rank + 1:
            parts.append("|")
        parts.append("=".join(LETTERS[shown] for shown, r in enumerate(ranks) if r == rank))
    if cutoff_rank is not None and cutoff_rank >= max(ranks, default=0):
        parts.append("|")
    return " ".join(parts)


def to_stored(display_ranks: tuple[int, ...] | list[int], display_order: list[int]) -> list[int]:
    """Ranks per response as shown -> ranks aligned with the ranking's completion_ids."""
    stored = [0] * len(display_order)
    for shown, position in enumerate(display_order):
        stored[position] = display_ranks[shown]
    return stored


def to_display(stored_ranks: list[int], display_order: list[int]) -> tuple[int, ...]:
    return tuple(stored_ranks[position] for position in display_order)


def _stored_judgment(session: Session, ranking_id: int, rater_id: int) -> RankingJudgment:
    return session.scalars(
        select(RankingJudgment).where(
            RankingJudgment.ranking_id == ranking_id, RankingJudgment.rater_id == rater_id
        )
    ).one()


def _own_assignment(
    session: Session, project: Project, rater_id: int, assignment_id: int
) -> RankingAssignment:
    assignment = session.get(RankingAssignment, assignment_id)
    if assignment is None or assignment.rater_id != rater_id or assignment.project_id != project.id:
        raise NotAssigned("This ranking was never assigned to you.")
    return assignment


def submit_ranking(
    session: Session,
    *,
    project: Project,
    rater_id: int,
    data: RankingInput,
    now: datetime | None = None,
) -> tuple[RankingJudgment, bool]:
    """Store a rater's order; returns (judgment, created). A repeat returns the stored one."""
    require_rater(session, project, rater_id)
    now = now or utcnow()
    assignment = _own_assignment(session, project, rater_id, data.assignment_id)
    if assignment.status == AssignmentStatus.done:  # a repeat: return what is stored
        return _stored_judgment(session, assignment.ranking_id, rater_id), False

    validate_ranks(data.ranks, data.cutoff_rank, len(assignment.display_order))
    if assignment.status != AssignmentStatus.active or assignment.lease_expires_at <= now:
        lock_ranking(session, assignment.ranking_id)
        if not has_room(session, project, assignment.ranking_id, now, rater_id):
            assignment.status = AssignmentStatus.lapsed
            session.flush()
            raise PairFilled(
                "Your reservation of this ranking expired and other raters have since completed it, "
                "so this order was not stored. Here is your next task."
            )

    elapsed = int((now - assignment.leased_at).total_seconds() * 1000)
    statement = (
        insert_ignoring_conflicts(session, RankingJudgment, index_elements=["ranking_id", "rater_id"])
        .values(
            ranking_id=assignment.ranking_id,
            rater_id=rater_id,
            project_id=project.id,
            assignment_id=assignment.id,
            ranks=to_stored(data.ranks, assignment.display_order),
            cutoff_rank=data.cutoff_rank,
            display_order=list(assignment.display_order),
            source=JudgmentSource.human.value,
            time_spent_ms=max(0, min(elapsed, MAX_TIME_SPENT_MS)),
            created_at=now,
        )
        .returning(RankingJudgment.id)
    )
    judgment_id = session.execute(statement).scalar_one_or_none()
    if judgment_id is None:  # a concurrent duplicate won the race: return its row
        session.expire_all()
        return _stored_judgment(session, assignment.ranking_id, rater_id), False
    assignment.status = AssignmentStatus.done
    # The update locks the ranking row until commit: concurrent submits decide on extra raters
    # one after the other.
    count, extra, kind = session.execute(
        update(Ranking)
        .where(Ranking.id == assignment.ranking_id)
        .values(judgment_count=Ranking.judgment_count + 1)
        .returning(Ranking.judgment_count, Ranking.extra_raters, Ranking.kind)
    ).one()
    if kind == ComparisonKind.regular:
        _widen_if_split(session, project, assignment.ranking_id, count, extra)
    session.flush()
    judgment = session.get(RankingJudgment, judgment_id)
    assert judgment is not None
    return judgment, True


def submit_order(
    session: Session,
    *,
    project: Project,
    rater_id: int,
    assignment_id: int,
    order: str,
    now: datetime | None = None,
) -> tuple[RankingJudgment, bool]:
    """Store an order typed in the notation of `parse_order` (what the workbench posts); a
    repeat returns the stored order without reading the text again."""
    require_rater(session, project, rater_id)
    assignment = _own_assignment(session, project, rater_id, assignment_id)
    if assignment.status == AssignmentStatus.done:
        return _stored_judgment(session, assignment.ranking_id, rater_id), False
    ranks, cutoff = parse_order(order, len(assignment.display_order))
    data = RankingInput(assignment_id=assignment_id, ranks=ranks, cutoff_rank=cutoff)
    return submit_ranking(session, project=project, rater_id=rater_id, data=data, now=now)


def pairwise_agreement(orders: list[list[int]]) -> float:
    """For each pair of positions, the share of orders on the most common side (better, worse or
    tie), averaged over the pairs; 1.0 when all orders imply the same pairs."""
    if not orders:
        return 1.0
    size = len(orders[0])
    shares = []
    for i, j in combinations(range(size), 2):
        sides = Counter((ranks[i] > ranks[j]) - (ranks[i] < ranks[j]) for ranks in orders)
        shares.append(max(sides.values()) / len(orders))
    return sum(shares) / len(shares) if shares else 1.0


_ORDERS = select(RankingJudgment.ranks).where(
    RankingJudgment.ranking_id == bindparam("ranking_id"), RankingJudgment.source == JudgmentSource.human
)


def _widen_if_split(session: Session, project: Project, ranking_id: int, count: int, extra: int) -> None:
    needed = project.overlap + extra
    if count < needed or needed >= max_overlap(project):
        return
    orders = [list(ranks) for ranks in session.scalars(_ORDERS, {"ranking_id": ranking_id})]
    if pairwise_agreement(orders) < project.split_threshold - 1e-9:
        session.execute(
            update(Ranking).where(Ranking.id == ranking_id).values(extra_raters=Ranking.extra_raters + 1)
        )


def skip_ranking(session: Session, *, project: Project, rater_id: int, assignment_id: int) -> None:
    """Pass on a ranking: its slot returns to the pool and this rater will not see it again."""
    require_rater(session, project, rater_id)
    assignment = _own_assignment(session, project, rater_id, assignment_id)
    if assignment.status == AssignmentStatus.active:
        assignment.status = AssignmentStatus.skipped
        session.flush()


def latest_ranking_judgment(
    session: Session, *, project: Project, rater_id: int, since: datetime
) -> RankingJudgment | None:
    """The rater's latest human order in the project made after `since`."""
    return session.scalars(
        select(RankingJudgment)
        .where(
            RankingJudgment.rater_id == rater_id,
            RankingJudgment.project_id == project.id,
            RankingJudgment.source == JudgmentSource.human,
            RankingJudgment.created_at > since,
        )
        .order_by(RankingJudgment.created_at.desc(), RankingJudgment.id.desc())
        .limit(1)
    ).one_or_none()


def undo_last_ranking(
    session: Session,
    *,
    project: Project,
    rater_id: int,
    window: timedelta,
    now: datetime | None = None,
) -> tuple[RankingAssignment, RankingInput] | None:
    """Withdraw the rater's latest order (within `window`) and lease the ranking to them again,
    shown in the same order; returns the assignment and the withdrawn answer (in display terms)
    to pre-fill the workbench, or None when there is nothing recent to undo."""
    require_rater(session, project, rater_id)
    now = now or utcnow()
    judgment = latest_ranking_judgment(session, project=project, rater_id=rater_id, since=now - window)
    if judgment is None:
        return None
    lock_ranking(session, judgment.ranking_id)
    assignment = session.scalars(
        select(RankingAssignment).where(
            RankingAssignment.ranking_id == judgment.ranking_id, RankingAssignment.rater_id == rater_id
        )
    ).one()
    previous = RankingInput(
        assignment_id=assignment.id,
        ranks=to_display(list(judgment.ranks), list(assignment.display_order)),
        cutoff_rank=judgment.cutoff_rank,
    )
    session.delete(judgment)
    session.execute(
        update(Ranking)
        .where(Ranking.id == judgment.ranking_id)
        .values(judgment_count=Ranking.judgment_count - 1)
    )
    assignment.status = AssignmentStatus.active
    assignment.leased_at = now
    assignment.lease_expires_at = now + timedelta(seconds=project.lease_seconds)
    session.flush()
    return assignment, previous
