"""Gold pairs mixed into the queue, adaptive overlap on split votes, paused raters."""

from __future__ import annotations

import random
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Comparison, ComparisonKind, Project, Role
from app.services import rating
from app.services.preferences.rows import preference_rows
from app.services.rating import JudgmentInput, votes_split
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import assignment_id, csrf_from, htmx_post, login


def _judge(session: Session, project, rater, pick_for_a: int) -> int:  # type: ignore[no-untyped-def]
    """Claim the rater's next pair and vote; `pick_for_a` < 0 means A is better, > 0 B."""
    assignment = rating.claim_next(session, project=project, rater_id=rater.id)
    assert assignment is not None
    pick = pick_for_a if assignment.a_on_left else -pick_for_a
    data = JudgmentInput(assignment.id, pick)
    rating.submit_judgment(session, project=project, rater_id=rater.id, data=data)
    return assignment.comparison_id


def test_gold_pairs_are_mixed_in_at_the_project_rate(session: Session) -> None:
    random.seed(7)
    project = make_project(session, overlap=1, gold_rate=0.25)
    for i in range(200):
        make_pair(session, project, f"p{i}", f"a{i}", f"b{i}")
    gold_ids = {make_pair(session, project, f"g{i}", f"ga{i}", f"gb{i}", gold="A").id for i in range(60)}
    rater = make_user(session, "r")
    drawn = [_judge(session, project, rater, -1) for _ in range(160)]
    share = sum(c in gold_ids for c in drawn) / len(drawn)
    assert 0.15 < share < 0.35, share
    assert len(set(drawn)) == len(drawn)  # never the same pair twice


def test_gold_pairs_ignore_the_overlap_and_are_not_served_without_a_rate(session: Session) -> None:
    project = make_project(session, overlap=1, gold_rate=1.0)
    gold = make_pair(session, project, "g", "ga", "gb", gold="B")
    raters = [make_user(session, f"r{i}") for i in range(4)]
    for rater in raters:  # every rater meets the gold pair, although the overlap is 1
        assert _judge(session, project, rater, 1) == gold.id
    assert rating.claim_next(session, project=project, rater_id=raters[0].id) is None

    plain = make_project(session, "plain", overlap=1, gold_rate=0.0)
    make_pair(session, plain, "g2", "ga2", "gb2", gold="A")
    assert rating.claim_next(session, project=plain, rater_id=raters[0].id) is None
    progress = rating.progress(session, project=plain, rater_id=raters[0].id)
    assert progress.remaining == 0


def test_votes_split_rule() -> None:
    assert votes_split({"A": 1, "B": 1}, 0.66)
    assert not votes_split({"A": 2, "B": 1}, 0.66)
    assert votes_split({"A": 2, "B": 1}, 0.75)
    assert votes_split({"A": 1, "B": 1, "tie": 1}, 0.66)
    assert not votes_split({"A": 3}, 1.0)
    assert not votes_split({}, 0.66)


def test_a_split_pair_gets_more_raters_up_to_the_maximum(session: Session) -> None:
    project = make_project(session, overlap=2, max_overlap=4, split_threshold=0.66)
    split = make_pair(session, project, "split", "a", "b")
    raters = [make_user(session, f"r{i}") for i in range(6)]
    # Two raters disagree: the pair is split and needs a third rater.
    _judge(session, project, raters[0], -1)
    _judge(session, project, raters[1], 1)
    session.refresh(split)
    assert (split.judgment_count, split.extra_raters) == (2, 1)
    # 2 against 1 is a majority of 0.67 >= 0.66: settled.
    _judge(session, project, raters[2], -1)
    session.refresh(split)
    assert (split.judgment_count, split.extra_raters) == (3, 1)
    assert rating.claim_next(session, project=project, rater_id=raters[3].id) is None


def test_adaptive_overlap_stops_at_the_maximum_and_unanimous_pairs_close(session: Session) -> None:
    project = make_project(session, overlap=2, max_overlap=3)
    agreed = make_pair(session, project, "agreed", "a", "b")
    raters = [make_user(session, f"r{i}") for i in range(5)]
    _judge(session, project, raters[0], -1)
    _judge(session, project, raters[1], -1)
    session.refresh(agreed)
    assert agreed.extra_raters == 0
    assert rating.claim_next(session, project=project, rater_id=raters[2].id) is None

    contested = make_pair(session, project, "contested", "c", "d")
    _judge(session, project, raters[0], -1)
    _judge(session, project, raters[1], 1)
    _judge(session, project, raters[2], 0)  # a tie: still split (1/1/1), but the maximum is 3
    session.refresh(contested)
    assert (contested.judgment_count, contested.extra_raters) == (3, 1)
    assert rating.claim_next(session, project=project, rater_id=raters[3].id) is None


def test_without_a_maximum_the_overlap_is_fixed(session: Session) -> None:
    project = make_project(session, overlap=2)
    pair = make_pair(session, project, "p", "a", "b")
    raters = [make_user(session, f"r{i}") for i in range(3)]
    _judge(session, project, raters[0], -1)
    _judge(session, project, raters[1], 1)
    session.refresh(pair)
    assert pair.extra_raters == 0
    assert rating.claim_next(session, project=project, rater_id=raters[2].id) is None


def test_a_resolved_pair_is_labelled_by_the_resolution(session: Session) -> None:
    project = make_project(session, overlap=2)
    pair = make_pair(session, project, "p", "a", "b")
    raters = [make_user(session, f"r{i}") for i in range(2)]
    _judge(session, project, raters[0], -1)
    _judge(session, project, raters[1], 1)
    assert list(preference_rows(session, project_id=project.id)) == []  # split
    pair.resolved_choice = "B"
    session.flush()
    (row,) = preference_rows(session, project_id=project.id)
    assert (row.kind, row.winner, row.chosen, row.agreement) == ("resolved", "B", "b", 0.5)


def test_a_paused_rater_gets_no_pairs_and_a_judge_cannot_sign_in(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, overlap=1)
        make_pair(session, project, "p", "a", "b")
        rater = make_user(session, "paused")
        rater.is_paused = True
        make_user(session, "ai-judge:rm", Role.judge)
    login(client, "paused")
    page = client.get("/rate/demo")
    assert page.status_code == 200
    assert 'data-testid="paused"' in page.text and 'name="assignment_id"' not in page.text
    with app.state.sessionmaker() as session:
        assert session.scalar(select(Comparison.judgment_count)) == 0
        assert session.scalar(select(Comparison.kind)) == ComparisonKind.regular
        session.get(type(rater), rater.id).is_paused = False
        session.commit()
    resumed = client.get("/rate/demo")
    assert 'data-testid="paused"' not in resumed.text
    client.post("/logout", data={"csrf_token": csrf_from(resumed.text)})
    refused = login(client, "ai-judge:rm")
    assert refused.status_code == 401


def test_a_gold_pair_looks_like_any_other_on_the_workbench(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, overlap=1, gold_rate=1.0)
        make_pair(session, project, "gold prompt", "gold left", "gold right", gold="A")
        make_user(session, "ann")
    login(client, "ann")
    gold_page = client.get("/rate/demo", headers={"HX-Request": "true"}).text
    assert "gold prompt" in gold_page
    with app.state.sessionmaker() as session, session.begin():
        project = session.scalars(select(Project)).one()
        project.gold_rate = 0.0
        make_pair(session, project, "plain prompt", "plain left", "plain right")
    token = csrf_from(gold_page)
    plain_page = htmx_post(
        client, "/rate/demo/judgments", token, {"assignment_id": assignment_id(gold_page), "pick": -1}
    ).text
    assert "plain prompt" in plain_page

    def skeleton(html: str) -> str:
        """The page with its pair-specific values taken out."""
        for word in ("gold", "plain"):
            html = (
                html.replace(f"{word} prompt", "P").replace(f"{word} left", "X").replace(f"{word} right", "X")
            )
        html = re.sub(r'value="\d+"', 'value="N"', html)
        html = re.sub(r"<strong[^>]*>\d+</strong>", "<strong>N</strong>", html)
        html = re.sub(r'<p class="(notice|success)"[^>]*>.*?</p>', "", html, flags=re.S)
        return html

    assert "gold" not in skeleton(gold_page).lower()
    assert skeleton(gold_page) == skeleton(plain_page)
