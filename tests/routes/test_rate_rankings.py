"""The ranking workbench over HTTP: served at /rate/<slug> by the task mix, orders posted in the
notation, stored aligned with the completions whatever the display order, refused with a clear
error (the typed order kept), one row per submit, skip, undo (htmx and plain), membership,
pausing and CSRF."""

from __future__ import annotations

import html
import json
import re

from sqlalchemy import func, select, update

from app.models import (
    Completion,
    Project,
    ProjectMember,
    Ranking,
    RankingAssignment,
    RankingJudgment,
    Role,
    User,
    Visibility,
)
from app.services.rating.ranking_judgments import format_order, parse_order
from tests.utils.factories import make_project, make_user
from tests.utils.rankings import make_ranking
from tests.utils.web import assignment_id, csrf_from, htmx_post, login

TEXTS = ["text-one", "text-two", "text-three", "text-four"]


def _setup(app, *, rankings: int = 2, **fields):  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "rank", task_mix={"rank": 1.0}, **fields)
        for i in range(rankings):
            make_ranking(session, project, f"question {i}", [f"{t}-{i}" for t in TEXTS])
        make_user(session, "rita", Role.rater)


def _shown(page: str) -> dict[str, str]:
    """Letter -> the completion text shown under it."""
    found = re.findall(r'data-testid="text-([A-I])">\s*<p>([^<]+)</p>', page)
    return {letter: text.strip() for letter, text in found}


def _judgments(app) -> list[RankingJudgment]:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session:
        return list(session.scalars(select(RankingJudgment).order_by(RankingJudgment.id)))


def test_order_notation_round_trips() -> None:
    assert parse_order("C=A D | B", 4) == ((1, 3, 1, 2), 2)
    assert parse_order("cadb", 4) == ((2, 4, 1, 3), None)
    assert parse_order("| A B C", 3) == ((1, 2, 3), 0)
    assert parse_order("A>B>C|", 3) == ((1, 2, 3), 3)
    for ranks, cutoff in [((1, 3, 1, 2), 2), ((2, 4, 1, 3), None), ((1, 1, 1), 0), ((1, 2, 3), 3)]:
        assert parse_order(format_order(ranks, cutoff), len(ranks)) == (ranks, cutoff)


def test_ranking_is_served_and_the_stored_order_names_the_completions(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app)
    login(client, "rita")
    page = client.get("/rate/rank")
    assert page.status_code == 200 and 'id="rank-form"' in page.text and "question" in page.text
    assert "Type the whole order" in page.text  # the rank kind's keys in the help
    shown = _shown(page.text)
    assert len(shown) == 4
    # Best first: text-three, then text-one tied with text-four, the line, text-two.
    by_text = {text.split("-")[1]: letter for letter, text in shown.items()}
    order = f"{by_text['three']} {by_text['one']}={by_text['four']} | {by_text['two']}"
    token, aid = csrf_from(page.text), assignment_id(page.text)
    response = htmx_post(client, "/rate/rank/rankings", token, {"assignment_id": aid, "order": order})
    assert response.status_code == 200 and response.text.lstrip().startswith('<section id="workbench"')
    assert assignment_id(response.text) != aid
    [judgment] = _judgments(app)
    with app.state.sessionmaker() as session:
        ranking = session.get(Ranking, judgment.ranking_id)
        texts = {c: t for c, t in session.execute(select_texts(ranking.completion_ids))}
    ranked = {
        texts[cid].split("-")[1]: rank
        for cid, rank in zip(ranking.completion_ids, judgment.ranks, strict=True)
    }
    assert ranked == {"three": 1, "one": 2, "four": 2, "two": 3}
    assert judgment.cutoff_rank == 2

    again = htmx_post(client, "/rate/rank/rankings", token, {"assignment_id": aid, "order": order})
    assert "already saved" in again.text and len(_judgments(app)) == 1


def select_texts(ids):  # type: ignore[no-untyped-def]
    return select(Completion.id, Completion.text).where(Completion.id.in_(ids))


def test_a_bad_order_is_refused_and_kept(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app)
    login(client, "rita")
    page = client.get("/rate/rank")
    token, aid = csrf_from(page.text), assignment_id(page.text)
    for order, message in [
        ("A B C", "missing: D"),
        ("A=B=|C D", "cannot split a tie"),
        ("=A B C D", "'=' goes between"),
        ("A B C Z", "'Z' is not"),
    ]:
        response = htmx_post(client, "/rate/rank/rankings", token, {"assignment_id": aid, "order": order})
        assert response.status_code == 422
        assert message in html.unescape(response.text)
        assert f'value="{html.escape(order)}"' in response.text  # what was typed is kept
        assert assignment_id(response.text) == aid
    assert _judgments(app) == []


def test_skip_and_undo(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app)
    login(client, "rita")
    page = client.get("/rate/rank")
    token, first = csrf_from(page.text), assignment_id(page.text)
    skipped = htmx_post(client, "/rate/rank/rankings/skip", token, {"assignment_id": first})
    second = assignment_id(skipped.text)
    assert second != first
    done = htmx_post(client, "/rate/rank/rankings", token, {"assignment_id": second, "order": "D C B A"})
    assert 'data-testid="empty"' in done.text and len(_judgments(app)) == 1

    undone = htmx_post(client, "/rate/rank/rankings/undo", token, {})
    assert assignment_id(undone.text) == second and 'value="D C B A"' in undone.text
    assert "withdrawn" in undone.text and _judgments(app) == []
    htmx_post(client, "/rate/rank/rankings", token, {"assignment_id": second, "order": "A=B | C D"})
    # Without htmx: a redirect, then the page shows the withdrawn order once.
    plain = client.post("/rate/rank/rankings/undo", data={"csrf_token": token}, follow_redirects=False)
    assert plain.status_code == 303
    shown = client.get("/rate/rank")
    assert 'value="A=B | C D"' in shown.text and assignment_id(shown.text) == second
    assert 'value="A=B | C D"' not in client.get("/rate/rank").text
    nothing = htmx_post(client, "/rate/rank/rankings/undo", token, {})
    assert "Nothing to undo" in nothing.text


def test_membership_pausing_and_csrf(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app, visibility=Visibility.members)
    login(client, "rita")
    assert client.get("/rate/rank").status_code == 404  # not a member of a members-only project
    with app.state.sessionmaker() as session, session.begin():
        project = session.scalars(select(Project).where(Project.slug == "rank")).one()
        rita = session.scalars(select(User).where(User.username == "rita")).one()
        session.add(ProjectMember(project_id=project.id, user_id=rita.id))
    page = client.get("/rate/rank")
    assert page.status_code == 200 and 'id="rank-form"' in page.text
    aid = assignment_id(page.text)
    refused = client.post("/rate/rank/rankings", data={"assignment_id": aid, "order": "A B C D"},
                          headers={"HX-Request": "true"})  # fmt: skip
    assert refused.status_code == 403 and _judgments(app) == []
    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(User).where(User.username == "rita").values(is_paused=True))
    paused = client.get("/rate/rank")
    assert 'data-testid="paused"' in paused.text
    with app.state.sessionmaker() as session:
        leases = session.scalar(select(func.count()).select_from(RankingAssignment))
    assert leases == 1  # pausing claims nothing new


def test_admin_sets_k_and_the_rank_share_then_imports_rankings_for_raters(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        make_user(session, "rita", Role.rater)
    login(client, "ada")
    token = csrf_from(client.get("/admin/projects/new").text)
    fields = {"slug": "five", "name": "Five", "overlap": "1", "mix_rank": "1", "csrf_token": token}
    bad = client.post("/admin/projects", data={**fields, "rank_k": "12"})
    assert bad.status_code == 422 and "rank_k" in bad.text
    created = client.post("/admin/projects", data={**fields, "rank_k": "5"}, follow_redirects=False)
    assert created.status_code == 303
    with app.state.sessionmaker() as session:
        project = session.scalars(select(Project).where(Project.slug == "five")).one()
        assert project.rank_k == 5 and project.task_mix == {"rank": 1.0}  # rankings only
    form = client.get("/admin/projects/five/import")
    assert 'value="rankings"' in form.text and "a list of 5" in form.text
    lines = [
        {
            "prompt": f"Rank these {n}",
            "completions": [f"answer {n}.{i}" for i in range(5)],
            "models": ["m"] * 5,
        }
        for n in range(2)
    ]
    short = {"prompt": "Too few", "completions": ["x", "y", "z"]}
    body = "\n".join(json.dumps(line) for line in [*lines, short]).encode()
    rejected = client.post(
        "/admin/projects/five/import",
        data={"kind": "rankings", "csrf_token": token},
        files={"file": ("r.jsonl", body, "application/jsonl")},
    )
    assert rejected.status_code == 422 and "line 3" in rejected.text and "ranks 5 at a time" in rejected.text
    body = "\n".join(json.dumps(line) for line in lines).encode()
    accepted = client.post(
        "/admin/projects/five/import",
        data={"kind": "rankings", "csrf_token": token},
        files={"file": ("r.jsonl", body, "application/jsonl")},
    )
    assert accepted.status_code == 200 and "2 rankings created" in accepted.text

    client.cookies.clear()
    login(client, "rita")
    page = client.get("/rate/five")
    assert page.status_code == 200 and len(_shown(page.text)) == 5
    assert sorted(_shown(page.text).values())[0].startswith("answer ")
