"""Ranking tasks: claims, leases, overlap, display order, gold, skip, undo, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import AssignmentStatus, Completion, Ranking, RankingAssignment, RankingJudgment, Visibility
from app.models.types import utcnow
from app.services import membership
from app.services.rating import InvalidJudgment, NotAMember, NotAssigned, PairFilled
from app.services.rating.ranking import claim_next_ranking, ranking_progress, ranking_view
from app.services.rating.ranking_judgments import (
    RankingInput,
    pairwise_agreement,
    skip_ranking,
    submit_ranking,
    undo_last_ranking,
)
from tests.utils.factories import make_project, make_user
from tests.utils.rankings import make_ranking

TEXTS = ["first", "second", "third", "fourth"]


def _count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(RankingJudgment))


def _rank(session: Session, project, rater, ranks=(1, 2, 3, 4), cutoff=None) -> int:  # type: ignore[no-untyped-def]
    assignment = claim_next_ranking(session, project=project, rater_id=rater.id)
    assert assignment is not None
    submit_ranking(
        session,
        project=project,
        rater_id=rater.id,
        data=RankingInput(assignment.id, tuple(ranks), cutoff),
    )
    return assignment.ranking_id


def test_claim_keeps_the_current_ranking_until_ordered(session: Session) -> None:
    project = make_project(session, overlap=1)
    make_ranking(session, project, "p1", TEXTS)
    make_ranking(session, project, "p2", TEXTS)
    rater = make_user(session, "r1")
    first = claim_next_ranking(session, project=project, rater_id=rater.id)
    again = claim_next_ranking(session, project=project, rater_id=rater.id)
    assert first is not None and again is not None and first.id == again.id
    assert sorted(first.display_order) == [0, 1, 2, 3]
    submit_ranking(session, project=project, rater_id=rater.id, data=RankingInput(first.id, (1, 2, 3, 4)))
    second = claim_next_ranking(session, project=project, rater_id=rater.id)
    assert second is not None and second.ranking_id != first.ranking_id


def test_overlap_distinct_raters_and_never_twice(session: Session) -> None:
    project = make_project(session, overlap=2)
    ranking = make_ranking(session, project, "p", TEXTS)
    raters = [make_user(session, f"r{i}") for i in range(3)]
    got = [claim_next_ranking(session, project=project, rater_id=r.id) for r in raters]
    assert got[0] is not None and got[1] is not None
    assert got[2] is None, "a third rater must not get a ranking whose two slots are leased"
    for rater, assignment in zip(raters[:2], got[:2], strict=True):
        submit_ranking(
            session, project=project, rater_id=rater.id, data=RankingInput(assignment.id, (1, 1, 2, 3))
        )
    assert _count(session) == 2
    assert session.get(Ranking, ranking.id).judgment_count == 2
    assert claim_next_ranking(session, project=project, rater_id=raters[0].id) is None
    assert claim_next_ranking(session, project=project, rater_id=raters[2].id) is None


@pytest.mark.parametrize("display_order", [[0, 1, 2, 3], [2, 0, 3, 1], [3, 2, 1, 0]])
def test_stored_ranks_name_the_right_completions(session: Session, display_order: list[int]) -> None:
    project = make_project(session, overlap=1)
    ranking = make_ranking(session, project, "p", TEXTS)
    rater = make_user(session, "r")
    assignment = claim_next_ranking(session, project=project, rater_id=rater.id)
    assignment.display_order = display_order
    session.flush()
    view = ranking_view(session, assignment)
    shown = [response.text for response in view.responses]
    assert shown == [TEXTS[position] for position in display_order]
    assert [response.letter for response in view.responses] == ["A", "B", "C", "D"]
    # The rater puts "third" first, "first" and "fourth" tied second, "second" last, and draws
    # the all-bad line under rank 2 (so "second" is unacceptable).
    wanted = {"third": 1, "first": 2, "fourth": 2, "second": 3}
    judgment, created = submit_ranking(
        session,
        project=project,
        rater_id=rater.id,
        data=RankingInput(assignment.id, tuple(wanted[text] for text in shown), cutoff_rank=2),
    )
    assert created
    texts = {cid: text for cid, text in session.execute(select(Completion.id, Completion.text))}
    stored = {texts[cid]: rank for cid, rank in zip(ranking.completion_ids, judgment.ranks, strict=True)}
    assert stored == wanted
    assert judgment.cutoff_rank == 2 and judgment.display_order == display_order


def test_display_orders_vary_between_raters(session: Session) -> None:
    random.seed(3)
    project = make_project(session, overlap=30)
    make_ranking(session, project, "p", TEXTS)
    orders = set()
    for i in range(30):
        assignment = claim_next_ranking(session, project=project, rater_id=make_user(session, f"r{i}").id)
        orders.add(tuple(assignment.display_order))
    assert len(orders) > 5


def test_repeated_submit_stores_one_order(session: Session) -> None:
    project = make_project(session, overlap=1)
    ranking = make_ranking(session, project, "p", TEXTS)
    rater = make_user(session, "r")
    assignment = claim_next_ranking(session, project=project, rater_id=rater.id)
    first, created_first = submit_ranking(
        session, project=project, rater_id=rater.id, data=RankingInput(assignment.id, (4, 3, 2, 1))
    )
    second, created_second = submit_ranking(
        session, project=project, rater_id=rater.id, data=RankingInput(assignment.id, (1, 2, 3, 4))
    )
    assert created_first and not created_second and first.id == second.id
    assert _count(session) == 1 and session.get(Ranking, ranking.id).judgment_count == 1


@pytest.mark.parametrize(
    ("ranks", "cutoff", "field"),
    [
        ((1, 2, 3), None, "ranks"),
        ((1, 2, 3, 5), None, "ranks"),
        ((0, 1, 2, 3), None, "ranks"),
        ((1, 3, 3, 4), None, "ranks"),
        ((1, 2, 2, 3), 4, "cutoff_rank"),
        ((1, 2, 3, 4), -1, "cutoff_rank"),
    ],
)
def test_invalid_orders_are_refused_with_the_field(session: Session, ranks, cutoff, field) -> None:  # type: ignore[no-untyped-def]
    project = make_project(session, overlap=1)
    make_ranking(session, project, "p", TEXTS)
    rater, other = make_user(session, "r"), make_user(session, "other")
    assignment = claim_next_ranking(session, project=project, rater_id=rater.id)
    with pytest.raises(InvalidJudgment) as refused:
        submit_ranking(
            session, project=project, rater_id=rater.id, data=RankingInput(assignment.id, ranks, cutoff)
        )
    assert refused.value.field == field
    with pytest.raises(NotAssigned):
        submit_ranking(
            session, project=project, rater_id=other.id, data=RankingInput(assignment.id, (1, 2, 3, 4))
        )
    assert _count(session) == 0


def test_expired_lease_returns_the_ranking_and_late_submit_rules(session: Session) -> None:
    project = make_project(session, overlap=1, lease_seconds=60)
    ranking = make_ranking(session, project, "p", TEXTS)
    slow, fast = make_user(session, "slow"), make_user(session, "fast")
    now = utcnow()
    held = claim_next_ranking(session, project=project, rater_id=slow.id, now=now)
    assert held is not None
    assert claim_next_ranking(session, project=project, rater_id=fast.id, now=now) is None
    later = now + timedelta(seconds=61)
    taken = claim_next_ranking(session, project=project, rater_id=fast.id, now=later)
    assert taken is not None and taken.ranking_id == ranking.id
    with pytest.raises(PairFilled):
        submit_ranking(
            session, project=project, rater_id=slow.id, data=RankingInput(held.id, (1, 2, 3, 4)), now=later
        )
    assert session.get(RankingAssignment, held.id).status == AssignmentStatus.lapsed
    submit_ranking(
        session, project=project, rater_id=fast.id, data=RankingInput(taken.id, (1, 2, 3, 4)), now=later
    )
    assert _count(session) == 1


def test_late_submit_is_kept_when_the_ranking_has_room(session: Session) -> None:
    project = make_project(session, overlap=1, lease_seconds=60)
    make_ranking(session, project, "p", TEXTS)
    rater = make_user(session, "r")
    now = utcnow()
    held = claim_next_ranking(session, project=project, rater_id=rater.id, now=now)
    _, created = submit_ranking(
        session,
        project=project,
        rater_id=rater.id,
        data=RankingInput(held.id, (2, 1, 3, 3)),
        now=now + timedelta(hours=2),
    )
    assert created and _count(session) == 1


def test_skip_releases_the_slot_and_is_not_shown_again(session: Session) -> None:
    project = make_project(session, overlap=1)
    ranking = make_ranking(session, project, "p", TEXTS)
    skipper, other = make_user(session, "skipper"), make_user(session, "other")
    assignment = claim_next_ranking(session, project=project, rater_id=skipper.id)
    skip_ranking(session, project=project, rater_id=skipper.id, assignment_id=assignment.id)
    assert claim_next_ranking(session, project=project, rater_id=skipper.id) is None
    taken = claim_next_ranking(session, project=project, rater_id=other.id)
    assert taken is not None and taken.ranking_id == ranking.id


def test_undo_withdraws_the_last_order_and_shows_it_again(session: Session) -> None:
    project = make_project(session, overlap=1)
    make_ranking(session, project, "p1", TEXTS)
    make_ranking(session, project, "p2", TEXTS)
    rater = make_user(session, "r")
    first = claim_next_ranking(session, project=project, rater_id=rater.id)
    order = list(first.display_order)
    submit_ranking(session, project=project, rater_id=rater.id, data=RankingInput(first.id, (2, 1, 3, 3), 2))
    undone = undo_last_ranking(session, project=project, rater_id=rater.id, window=timedelta(minutes=5))
    assert undone is not None
    assignment, previous = undone
    assert assignment.id == first.id and assignment.status == AssignmentStatus.active
    assert assignment.display_order == order, "an undone ranking is shown as it was"
    assert previous.ranks == (2, 1, 3, 3) and previous.cutoff_rank == 2
    assert _count(session) == 0 and session.get(Ranking, first.ranking_id).judgment_count == 0
    assert claim_next_ranking(session, project=project, rater_id=rater.id).id == first.id
    judgment, created = submit_ranking(
        session, project=project, rater_id=rater.id, data=RankingInput(first.id, (1, 2, 3, 4))
    )
    assert created and judgment.cutoff_rank is None
    later = utcnow() + timedelta(minutes=10)
    assert (
        undo_last_ranking(session, project=project, rater_id=rater.id, window=timedelta(minutes=5), now=later)
        is None
    )


def test_gold_rankings_are_mixed_in_and_ignore_the_overlap(session: Session) -> None:
    random.seed(11)
    project = make_project(session, overlap=1, gold_rate=0.25)
    for i in range(120):
        make_ranking(session, project, f"p{i}", [f"{t} {i}" for t in TEXTS])
    gold_ids = {
        make_ranking(session, project, f"g{i}", [f"g{t} {i}" for t in TEXTS], gold_ranks=[1, 2, 3, 4]).id
        for i in range(40)
    }
    rater = make_user(session, "r")
    drawn = [_rank(session, project, rater) for _ in range(100)]
    share = sum(ranking_id in gold_ids for ranking_id in drawn) / len(drawn)
    assert 0.12 < share < 0.38, share
    assert len(set(drawn)) == len(drawn)

    only_gold = make_project(session, "gold", overlap=1, gold_rate=1.0)
    gold = make_ranking(session, only_gold, "gold prompt", TEXTS, gold_ranks=[2, 1, 3, 3])
    for i in range(3):  # every rater meets the gold ranking although the overlap is 1
        assert _rank(session, only_gold, make_user(session, f"g{i}")) == gold.id
    plain = make_project(session, "plain", overlap=1)
    make_ranking(session, plain, "gold prompt", TEXTS, gold_ranks=[1, 2, 3, 4])
    assert claim_next_ranking(session, project=plain, rater_id=rater.id) is None
    assert ranking_progress(session, project=plain, rater_id=rater.id).remaining == 0


def test_pairwise_agreement_rule() -> None:
    assert pairwise_agreement([[1, 2, 3], [1, 2, 3]]) == 1.0
    assert pairwise_agreement([[1, 2, 3], [3, 2, 1]]) == 0.5
    assert pairwise_agreement([[1, 1, 2], [1, 2, 3], [1, 2, 3]]) == pytest.approx((2 / 3 + 1 + 1) / 3)


def test_disagreeing_orders_widen_the_ranking_up_to_the_maximum(session: Session) -> None:
    project = make_project(session, overlap=2, max_overlap=3, split_threshold=0.66)
    ranking = make_ranking(session, project, "split", TEXTS)
    raters = [make_user(session, f"r{i}") for i in range(4)]
    _rank(session, project, raters[0], (1, 2, 3, 4))
    assert session.get(Ranking, ranking.id).extra_raters == 0
    # The second rater orders the displayed responses the other way round: split.
    assignment = claim_next_ranking(session, project=project, rater_id=raters[1].id)
    first = session.scalars(select(RankingJudgment)).one().ranks
    reversed_display = tuple(5 - first[position] for position in assignment.display_order)
    submit_ranking(
        session, project=project, rater_id=raters[1].id, data=RankingInput(assignment.id, reversed_display)
    )
    session.refresh(ranking)
    assert (ranking.judgment_count, ranking.extra_raters) == (2, 1)
    _rank(session, project, raters[2])
    session.refresh(ranking)
    assert (ranking.judgment_count, ranking.extra_raters) == (3, 1), "the maximum is 3 raters"
    assert claim_next_ranking(session, project=project, rater_id=raters[3].id) is None


def test_only_members_rank_and_removal_releases_the_lease(session: Session) -> None:
    project = make_project(session, "secret", overlap=1, visibility=Visibility.members)
    make_ranking(session, project, "p", TEXTS)
    member, outsider = make_user(session, "member"), make_user(session, "outsider")
    with pytest.raises(NotAMember):
        claim_next_ranking(session, project=project, rater_id=outsider.id)
    membership.add_members(session, project, usernames=["member"])
    held = claim_next_ranking(session, project=project, rater_id=member.id)
    assert held is not None
    membership.remove_members(session, project, usernames=["member"])
    assert session.get(RankingAssignment, held.id).status == AssignmentStatus.lapsed
    with pytest.raises(NotAMember):
        submit_ranking(session, project=project, rater_id=member.id, data=RankingInput(held.id, (1, 2, 3, 4)))
    with pytest.raises(NotAMember):
        skip_ranking(session, project=project, rater_id=member.id, assignment_id=held.id)
    with pytest.raises(NotAMember):
        undo_last_ranking(session, project=project, rater_id=member.id, window=timedelta(minutes=5))


def test_progress_counts(session: Session) -> None:
    project = make_project(session, overlap=1)
    for i in range(3):
        make_ranking(session, project, f"p{i}", [f"{t} {i}" for t in TEXTS])
    rater = make_user(session, "r")
    assert ranking_progress(session, project=project, rater_id=rater.id).remaining == 3
    _rank(session, project, rater)
    progress = ranking_progress(session, project=project, rater_id=rater.id)
    assert (progress.done_today, progress.done_total, progress.remaining) == (1, 1, 2)
