"""Twenty raters at once on PostgreSQL: overlap holds, nobody judges a pair twice, all complete."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import select

from app.db import make_engine, make_sessionmaker
from app.models import Judgment
from app.services import rating
from app.services.projects import get_project
from app.services.rating import JudgmentInput
from tests.utils.factories import make_pair, make_project, make_user

RATERS = 20
PAIRS = 60
OVERLAP = 2


def _rate_until_done(factory, slug: str, rater_id: int, errors: list[BaseException], pick: int = 1) -> None:  # type: ignore[no-untyped-def]
    try:
        while True:
            with factory() as session, session.begin():
                project = get_project(session, slug)
                assignment = rating.claim_next(session, project=project, rater_id=rater_id)
                if assignment is None:
                    return
                assignment_id = assignment.id
            with factory() as session, session.begin():
                project = get_project(session, slug)
                rating.submit_judgment(
                    session,
                    project=project,
                    rater_id=rater_id,
                    data=JudgmentInput(assignment_id, pick=pick),
                )
    except BaseException as error:  # noqa: BLE001 - reported by the test
        errors.append(error)


def test_concurrent_raters_respect_overlap(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=RATERS)
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        project = make_project(session, "busy", overlap=OVERLAP)
        for i in range(PAIRS):
            make_pair(session, project, f"prompt {i}", f"a {i}", f"b {i}")
        rater_ids = [make_user(session, f"rater{i}").id for i in range(RATERS)]

    errors: list[BaseException] = []
    barrier = threading.Barrier(RATERS)

    def run(rater_id: int) -> None:
        barrier.wait()
        _rate_until_done(factory, "busy", rater_id, errors)

    threads = [threading.Thread(target=run, args=(rid,)) for rid in rater_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    with factory() as session:
        rows = session.execute(select(Judgment.comparison_id, Judgment.rater_id)).all()
    engine.dispose()
    per_pair = Counter(comparison_id for comparison_id, _ in rows)
    assert len(rows) == len(set(rows)), "a rater judged a pair twice"
    assert max(per_pair.values()) <= OVERLAP, "a pair got more judgments than its overlap"
    assert len(per_pair) == PAIRS and set(per_pair.values()) == {OVERLAP}, "not every pair completed"
    assert len({rater for _, rater in rows}) > 1, "the work was not shared between raters"


def test_concurrent_raters_with_adaptive_overlap(pg_url: str) -> None:
    """Raters who always disagree (half pick left, half right): every pair widens one rater at a
    time, exactly to what its votes call for, and never beyond the maximum."""
    from app.models import Comparison
    from app.services.rating import votes_split

    raters, pairs, overlap, maximum = 12, 30, 2, 5
    engine = make_engine(pg_url, pool_size=raters)
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        project = make_project(session, "split", overlap=overlap, max_overlap=maximum, split_threshold=0.66)
        for i in range(pairs):
            make_pair(session, project, f"prompt {i}", f"a {i}", f"b {i}")
        rater_ids = [make_user(session, f"splitter{i}").id for i in range(raters)]

    errors: list[BaseException] = []
    barrier = threading.Barrier(raters)

    def run(index: int, rater_id: int) -> None:
        barrier.wait()
        _rate_until_done(factory, "split", rater_id, errors, pick=-1 if index % 2 else 1)

    threads = [threading.Thread(target=run, args=(i, rid)) for i, rid in enumerate(rater_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    # A rater who found nothing while another's vote was widening a pair sees it on the next
    # visit: the raters come back, one after the other, until a round stores nothing.
    def stored_count() -> int:
        with factory() as session:
            return len(session.execute(select(Judgment.id)).all())

    before = -1
    while before != (now := stored_count()):
        before = now
        for index, rater_id in enumerate(rater_ids):
            _rate_until_done(factory, "split", rater_id, errors, pick=-1 if index % 2 else 1)
    assert not errors, errors

    with factory() as session:
        comparisons = session.execute(
            select(Comparison.id, Comparison.judgment_count, Comparison.extra_raters)
        ).all()
        votes = session.execute(select(Judgment.comparison_id, Judgment.rater_id, Judgment.choice)).all()
    engine.dispose()
    stored = Counter(comparison_id for comparison_id, _, _ in votes)
    assert len({(c, r) for c, r, _ in votes}) == len(votes), "a rater judged a pair twice"
    for comparison_id, count, extra in comparisons:
        assert count == stored[comparison_id] == overlap + extra, (comparison_id, count, extra)
        assert count <= maximum
        tally = Counter(str(choice) for c, _, choice in votes if c == comparison_id)
        # Widening stops when the votes settle or at the maximum, never earlier or later.
        assert count == maximum or not votes_split(dict(tally), 0.66), (comparison_id, tally)
    assert any(extra for _, _, extra in comparisons), "no pair was widened: the test saw no split"


def test_concurrent_raters_follow_the_priorities(pg_url: str) -> None:
    """The uncertainty strategy with twenty raters at once, in a members-only project: pairs are
    opened in priority order (out of order by no more than the claims that can run beside one
    another), leases and overlap hold, and a rater who is not a member is given nothing."""
    import random

    from app.models import Assignment, Comparison, SelectionStrategy, Visibility
    from app.services import membership
    from app.services.rating.common import NotAMember

    pairs = 200
    engine = make_engine(pg_url, pool_size=RATERS + 2)
    factory = make_sessionmaker(engine)
    rng = random.Random(7)
    with factory() as session, session.begin():
        project = make_project(session, "ranked", overlap=OVERLAP, visibility=Visibility.members,
                               selection_strategy=SelectionStrategy.uncertainty)  # fmt: skip
        priorities = rng.sample(range(1, 10 * pairs), pairs)  # unrelated to arrival order
        for i, priority in enumerate(priorities):
            make_pair(session, project, f"prompt {i}", f"a {i}", f"b {i}").priority = priority / (10 * pairs)
        rater_ids = [make_user(session, f"ranked{i}").id for i in range(RATERS)]
        holders = [make_user(session, f"holder{i}") for i in range(OVERLAP)]
        outsider_id = make_user(session, "outsider").id
        membership.add_members(session, project, usernames=[f"ranked{i}" for i in range(RATERS)]
                               + [h.username for h in holders])  # fmt: skip
        # Two members take the most uncertain pair and keep it leased: nobody else may get it.
        held = {rating.claim_next(session, project=project, rater_id=h.id).comparison_id for h in holders}  # type: ignore[union-attr]
        assert len(held) == 1
        top = max(session.scalars(select(Comparison)), key=lambda c: c.priority)
        assert held == {top.id}

    errors: list[BaseException] = []
    refused: list[BaseException] = []
    barrier = threading.Barrier(RATERS + 1)

    def run(rater_id: int) -> None:
        barrier.wait()
        _rate_until_done(factory, "ranked", rater_id, errors)

    def outsider() -> None:
        barrier.wait()
        try:
            with factory() as session, session.begin():
                rating.claim_next(session, project=get_project(session, "ranked"), rater_id=outsider_id)
        except NotAMember as error:
            refused.append(error)

    threads = [threading.Thread(target=run, args=(rid,)) for rid in rater_ids]
    threads.append(threading.Thread(target=outsider))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert len(refused) == 1, "a rater outside the members was given a pair"

    with factory() as session:
        claims = session.execute(
            select(Assignment.comparison_id, Assignment.rater_id)
            .where(Assignment.rater_id.in_(rater_ids))
            .order_by(Assignment.id)
        ).all()
        priority = dict(session.execute(select(Comparison.id, Comparison.priority)).all())
        rows = session.execute(select(Judgment.comparison_id, Judgment.rater_id)).all()
    engine.dispose()

    per_pair = Counter(comparison_id for comparison_id, _ in rows)
    assert len(rows) == len(set(rows)), "a rater judged a pair twice"
    assert top.id not in per_pair, "a pair fully leased to others was served"
    assert set(per_pair) == set(priority) - {top.id} and set(per_pair.values()) == {OVERLAP}
    assert not {r for _, r in rows} & {outsider_id}

    # The order in which pairs were first served, against their priority rank among the pairs
    # served: a pair is opened only once every pair above it is open, locked by a claim running
    # beside this one, or seen by this rater; so it is never further from its rank than the
    # claims that can run at once (twice the raters, to allow one rater's claim to commit later).
    opened: list[int] = []
    for comparison_id, _ in claims:
        if comparison_id not in opened:
            opened.append(comparison_id)
    rank = {cid: n for n, cid in enumerate(sorted(opened, key=lambda c: -priority[c]))}
    displacement = [abs(position - rank[cid]) for position, cid in enumerate(opened)]
    assert max(displacement) <= 2 * RATERS, displacement
    # and on average much closer: arrival order on these priorities would be ~pairs / 3 off
    assert sum(displacement) / len(displacement) <= RATERS / 2, displacement
