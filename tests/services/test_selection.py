"""Selection strategies: which open pair a rater is served next, on SQLite and PostgreSQL."""

from __future__ import annotations

import random

import pytest
from sqlalchemy.orm import Session

from app.models import Comparison, Project, SelectionStrategy
from app.services import rating
from app.services.rating import JudgmentInput
from tests.utils.factories import make_pair, make_project, make_user


def _pairs(session: Session, project: Project, n: int) -> list[Comparison]:
    return [make_pair(session, project, f"prompt {i}", f"a {i}", f"b {i}") for i in range(n)]


def _served(session: Session, project: Project, rater_id: int) -> list[int]:
    """The comparisons one rater is served, in order, judging each, until nothing is left."""
    order = []
    while (assignment := rating.claim_next(session, project=project, rater_id=rater_id)) is not None:
        order.append(assignment.comparison_id)
        rating.submit_judgment(
            session, project=project, rater_id=rater_id, data=JudgmentInput(assignment.id, pick=1)
        )
    return order


def test_arrival_serves_the_newest_first(session: Session) -> None:
    project = make_project(session)
    pairs = _pairs(session, project, 5)
    rater = make_user(session, "r")
    assert _served(session, project, rater.id) == [p.id for p in reversed(pairs)]


def test_uncertainty_serves_the_highest_priority_first_and_unscored_pairs_last(session: Session) -> None:
    project = make_project(session, selection_strategy=SelectionStrategy.uncertainty)
    pairs = _pairs(session, project, 8)
    rng = random.Random(3)
    scored = pairs[:6]
    for pair, priority in zip(scored, rng.sample(range(1, 100), len(scored)), strict=True):
        pair.priority = priority / 100
    session.flush()
    rater = make_user(session, "r")
    expected = [p.id for p in sorted(scored, key=lambda p: -p.priority)] + [pairs[7].id, pairs[6].id]
    assert _served(session, project, rater.id) == expected


def test_pairs_with_votes_are_finished_first_under_every_strategy(session: Session) -> None:
    project = make_project(session, overlap=2, selection_strategy=SelectionStrategy.uncertainty)
    low, high = _pairs(session, project, 2)
    low.priority, high.priority = 0.1, 0.9
    session.flush()
    first, second = make_user(session, "first"), make_user(session, "second")
    # `first` votes on the low-priority pair only: it now has a vote, so it comes first
    rating.submit_judgment(
        session, project=project, rater_id=first.id,
        data=JudgmentInput(_claim_specific(session, project, first.id, low.id), pick=1),
    )  # fmt: skip
    assert _served(session, project, second.id) == [low.id, high.id]


def _claim_specific(session: Session, project: Project, rater_id: int, comparison_id: int) -> int:
    """Claim until the rater holds `comparison_id`, skipping the others; its assignment id."""
    while True:
        assignment = rating.claim_next(session, project=project, rater_id=rater_id)
        assert assignment is not None
        if assignment.comparison_id == comparison_id:
            return assignment.id
        rating.skip(session, project=project, rater_id=rater_id, assignment_id=assignment.id)


def test_random_serves_every_open_pair_in_a_shuffled_order(session: Session) -> None:
    random.seed(11)
    project = make_project(session, selection_strategy=SelectionStrategy.random)
    pairs = _pairs(session, project, 30)
    rater = make_user(session, "r")
    order = _served(session, project, rater.id)
    assert sorted(order) == sorted(p.id for p in pairs), "every pair once, the wrap-around included"
    arrival = [p.id for p in reversed(pairs)]
    assert order != arrival and order != sorted(order)


def test_random_draws_each_pair_by_the_gap_above_its_key(session: Session) -> None:
    """The first pair served to 600 fresh raters: the walk down from a uniform point takes the
    pair whose key is the nearest below it, so each pair's share is the gap above its key (the
    top one's wraps round); with keys drawn uniformly every pair is about equally likely."""
    random.seed(5)
    project = make_project(session, overlap=50, selection_strategy=SelectionStrategy.random)
    pairs = _pairs(session, project, 6)
    for pair, key in zip(pairs, (0.05, 0.1, 0.15, 0.5, 0.8, 0.95), strict=True):
        pair.random_key = key  # uneven gaps, to see the rule
    session.flush()
    counts = dict.fromkeys((p.id for p in pairs), 0)
    for i in range(600):
        rater = make_user(session, f"r{i}")
        assignment = rating.claim_next(session, project=project, rater_id=rater.id)
        assert assignment is not None
        counts[assignment.comparison_id] += 1
        rating.skip(session, project=project, rater_id=rater.id, assignment_id=assignment.id)
    gaps = {pairs[0].id: 0.05, pairs[1].id: 0.05, pairs[2].id: 0.35, pairs[3].id: 0.3, pairs[4].id: 0.15,
            pairs[5].id: 0.05 + 0.05}  # fmt: skip
    for comparison_id, share in gaps.items():
        assert abs(counts[comparison_id] / 600 - share) < 0.06, (counts, gaps)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_mix_serves_its_random_share(session: Session, share: float) -> None:
    random.seed(2)
    project = make_project(session, selection_strategy=SelectionStrategy.mix, random_share=share)
    pairs = _pairs(session, project, 20)
    for index, pair in enumerate(pairs):
        pair.priority = index / 20  # the newest pair is also the most uncertain
        pair.random_key = ((index * 7) % 20) / 20
    session.flush()
    rater = make_user(session, "r")
    order = _served(session, project, rater.id)
    by_priority = [p.id for p in reversed(pairs)]
    assert (order == by_priority) == (share == 0.0)
    assert sorted(order) == sorted(by_priority)
