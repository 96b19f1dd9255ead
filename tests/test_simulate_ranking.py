"""The ranking mode of the simulated raters: `decide_ranking` on known scores, and ranking tasks
ordered through a real server's ranking workbench as the oracle orders them."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from app.db import make_engine, make_sessionmaker
from app.models import Completion, Ranking, RankingJudgment
from app.simulate import decide_ranking, reading_minutes, simulate
from app.workbench_html import parse_workbench
from tests.test_simulate import _config, engine_session, server, sim_db  # noqa: F401  (fixtures)
from tests.utils.factories import make_project
from tests.utils.rankings import make_ranking


def test_decide_ranking_orders_by_score_ties_equal_scores_and_swaps_neighbours() -> None:
    rng = random.Random(0)
    assert decide_ranking([1.0, 3.0, 2.0, 3.0], rng=rng).ranks == (3, 1, 2, 1)
    lined = decide_ranking([1.0, 3.0, 2.0, 0.0], rng=rng, bad_below=2.0)
    assert lined.ranks == (3, 1, 2, 4) and lined.cutoff_rank == 2
    swapped = decide_ranking([0.0, 1.0, 2.0], rng=random.Random(1), noise=1.0)
    # one pass from the top: best and second swap, then the old best and third swap
    assert swapped.ranks == (2, 1, 3) and swapped.swaps == 2  # the best (index 2) ends last
    many = [decide_ranking([0.0, 1.0, 2.0, 3.0], rng=rng, noise=0.2) for _ in range(2000)]
    assert 0.15 < sum(d.swaps for d in many) / (3 * len(many)) < 0.25
    assert reading_minutes(4) == 2 * reading_minutes(2)


def test_the_ranking_workbench_reads_as_responses_in_display_order() -> None:
    page = parse_workbench(
        '<section id="workbench" class="workbench ranking-bench"><div class="conversation">'
        '<div class="message role-user"><div class="markdown"><p>Q?</p></div></div></div>'
        '<article class="rank-card"><div class="markdown card-text" data-testid="text-A">'
        "<p>one <b>banana</b></p></div></article>"
        '<article class="rank-card"><div class="markdown card-text" data-testid="text-B">'
        "<p>two</p></div></article>"
        '<form id="rank-form"><input type="hidden" name="csrf_token" value="t">'
        '<input type="hidden" name="assignment_id" value="7"></form></section>'
    )
    assert page.task == "rank" and page.assignment_id == 7 and page.prompt == "Q?"
    assert page.responses == [("A", "one banana"), ("B", "two")]


@pytest.mark.postgres
def test_simulated_raters_rank_as_the_oracle_orders(server: str, sim_db: str) -> None:  # noqa: F811
    with engine_session(sim_db) as session:
        project = make_project(session, "sim", task_mix={"rank": 1.0}, rank_k=4, overlap=2)
        for n in range(3):
            texts = [f"answer {n} " + " ".join(["banana"] * count) for count in (2, 0, 3, 1)]
            make_ranking(session, project, f"question {n}", texts)
    result = simulate(_config(server, raters=2), database_url=sim_db)
    assert result.errors == []
    assert sum(r.rankings for r in result.raters) == 6 and result.judgments == 0
    engine = make_engine(sim_db, pool_size=1)
    with make_sessionmaker(engine)() as session:
        stored = session.execute(select(RankingJudgment, Ranking).join(Ranking)).all()
        assert len(stored) == 6
        for judgment, ranking in stored:
            counts = [session.get(Completion, cid).text.count("banana") for cid in ranking.completion_ids]  # type: ignore[union-attr]
            assert judgment.ranks == [4 - c for c in counts]  # more bananas ranked higher
            assert judgment.cutoff_rank is None and sorted(judgment.display_order) == [0, 1, 2, 3]
    engine.dispose()
