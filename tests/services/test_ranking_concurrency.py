"""Twenty raters ranking at once on PostgreSQL: the overlap holds, nobody orders a ranking twice,
every ranking completes."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import select

from app.db import make_engine, make_sessionmaker
from app.models import Ranking, RankingJudgment
from app.services.projects import get_project
from app.services.rating.ranking import claim_next_ranking
from app.services.rating.ranking_judgments import RankingInput, submit_ranking
from tests.utils.factories import make_project, make_user
from tests.utils.rankings import make_ranking

RATERS = 20
RANKINGS = 40
OVERLAP = 2


def _rank_until_done(factory, slug: str, rater_id: int, errors: list[BaseException]) -> None:  # type: ignore[no-untyped-def]
    try:
        while True:
            with factory() as session, session.begin():
                project = get_project(session, slug)
                assignment = claim_next_ranking(session, project=project, rater_id=rater_id)
                if assignment is None:
                    return
                assignment_id = assignment.id
            with factory() as session, session.begin():
                project = get_project(session, slug)
                data = RankingInput(assignment_id, (1, 2, 2, 3), cutoff_rank=2)
                submit_ranking(session, project=project, rater_id=rater_id, data=data)
                # A retried submit (a double click) stores nothing more.
                _, created = submit_ranking(session, project=project, rater_id=rater_id, data=data)
                assert not created
    except BaseException as error:  # noqa: BLE001 - reported by the test
        errors.append(error)


def test_concurrent_rankers_respect_overlap(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=RATERS)
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        project = make_project(session, "ranked", overlap=OVERLAP)
        for i in range(RANKINGS):
            make_ranking(session, project, f"prompt {i}", [f"{letter} {i}" for letter in "abcd"])
        rater_ids = [make_user(session, f"ranker{i}").id for i in range(RATERS)]

    errors: list[BaseException] = []
    barrier = threading.Barrier(RATERS)

    def run(rater_id: int) -> None:
        barrier.wait()
        _rank_until_done(factory, "ranked", rater_id, errors)

    threads = [threading.Thread(target=run, args=(rid,)) for rid in rater_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    with factory() as session:
        rows = session.execute(select(RankingJudgment.ranking_id, RankingJudgment.rater_id)).all()
        counts = dict(session.execute(select(Ranking.id, Ranking.judgment_count)).all())
    engine.dispose()
    per_ranking = Counter(ranking_id for ranking_id, _ in rows)
    assert len(rows) == len(set(rows)), "a rater ordered a ranking twice"
    assert max(per_ranking.values()) <= OVERLAP, "a ranking got more orders than its overlap"
    assert len(per_ranking) == RANKINGS and set(per_ranking.values()) == {OVERLAP}, (
        "not every ranking completed"
    )
    assert counts == dict(per_ranking), "judgment_count disagrees with the stored orders"
    assert len({rater for _, rater in rows}) > 1, "the work was not shared between raters"
