from __future__ import annotations

import re

from sqlalchemy import func, select

from app.models import Judgment, Role
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import assignment_id, csrf_from, htmx_post, login


def _setup(app, *, pairs: int = 3, **project_fields):  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "proj", **project_fields)
        for i in range(pairs):
            make_pair(session, project, f"question {i}", f"answer a{i}", f"answer b{i}")
        make_user(session, "rita", Role.rater)


def _count(app) -> int:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session:
        return session.scalar(select(func.count()).select_from(Judgment))


def test_submit_swaps_in_the_next_pair(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app, pairs=2, flags=["harmful"])
    login(client, "rita")
    page = client.get("/rate/proj")
    assert page.status_code == 200 and 'id="workbench"' in page.text
    assert "<kbd>1</kbd>" in page.text and "Both are bad" in page.text and "harmful" in page.text
    token, first = csrf_from(page.text), assignment_id(page.text)
    response = htmx_post(
        client,
        "/rate/proj/judgments",
        token,
        {"assignment_id": first, "pick": -1, "flags": "harmful", "rationale": "clearer"},
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="workbench"'), "a fragment, not a page"
    assert assignment_id(response.text) != first
    assert re.search(r'data-testid="done-today">1<', response.text)
    last = htmx_post(
        client, "/rate/proj/judgments", token, {"assignment_id": assignment_id(response.text), "pick": 2}
    )
    assert 'data-testid="empty"' in last.text and "All done here" in last.text
    assert _count(app) == 2


def test_double_submit_stores_one_judgment(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app)
    login(client, "rita")
    page = client.get("/rate/proj")
    token, aid = csrf_from(page.text), assignment_id(page.text)
    first = htmx_post(client, "/rate/proj/judgments", token, {"assignment_id": aid, "pick": 1})
    second = htmx_post(client, "/rate/proj/judgments", token, {"assignment_id": aid, "pick": 1})
    assert first.status_code == second.status_code == 200
    assert "already saved" in second.text
    assert _count(app) == 1


def test_bad_submits_get_clear_errors(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app)
    login(client, "rita")
    page = client.get("/rate/proj")
    token, aid = csrf_from(page.text), assignment_id(page.text)
    unknown_choice = htmx_post(client, "/rate/proj/judgments", token, {"assignment_id": aid, "pick": 7})
    assert unknown_choice.status_code == 422 and "pick: 7 is not on this project" in unknown_choice.text
    no_choice = htmx_post(client, "/rate/proj/judgments", token, {"assignment_id": aid})
    assert no_choice.status_code == 422 and "Choose which response is better" in no_choice.text
    not_mine = htmx_post(client, "/rate/proj/judgments", token, {"assignment_id": 987654, "pick": 1})
    assert not_mine.status_code == 404 and "never assigned to you" in not_mine.text
    wrong_type = htmx_post(client, "/rate/proj/judgments", token, {"assignment_id": aid, "pick": "left"})
    assert wrong_type.status_code == 422 and "pick" in wrong_type.text
    assert _count(app) == 0


def test_skip_and_undo(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app, pairs=3)
    login(client, "rita")
    page = client.get("/rate/proj")
    token, first = csrf_from(page.text), assignment_id(page.text)
    skipped = htmx_post(client, "/rate/proj/skip", token, {"assignment_id": first})
    second = assignment_id(skipped.text)
    assert second != first
    after = htmx_post(client, "/rate/proj/judgments", token, {"assignment_id": second, "pick": -2})
    assert _count(app) == 1
    undone = htmx_post(client, "/rate/proj/undo", token, {})
    assert "withdrawn" in undone.text and assignment_id(undone.text) == second
    assert re.search(r'value="-2" data-key="1"\s+checked', undone.text), "the old pick is pre-selected"
    assert _count(app) == 0
    assert assignment_id(after.text) not in (first, second)


def test_untrusted_text_is_escaped(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "proj")
        make_pair(
            session,
            project,
            "<script>alert('prompt')</script>",
            "<img src=x onerror=alert(1)>",
            "[click](javascript:alert(2))",
        )
        make_user(session, "rita", Role.rater)
    login(client, "rita")
    page = client.get("/rate/proj").text
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror" in page
    assert 'href="javascript:' not in page


def test_empty_state_when_nothing_to_rate(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app, pairs=0)
    login(client, "rita")
    page = client.get("/rate/proj")
    assert "All done here" in page.text and "no pairs left" in page.text


def test_pairs_leased_to_others_show_a_waiting_state_not_all_done(app, client) -> None:  # type: ignore[no-untyped-def]
    """With overlap 2 and one pair, two raters hold it: a third has nothing to claim now but is
    not done, because a lease may run out. Their page says so and polls; once the pair has its
    votes, the third rater is done."""
    from fastapi.testclient import TestClient

    _setup(app, pairs=1, overlap=2)
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "sam", Role.rater)
        make_user(session, "tess", Role.rater)
    holders = []
    for name in ("rita", "sam"):
        other = TestClient(app)
        login(other, name)
        page = other.get("/rate/proj")
        holders.append((other, csrf_from(page.text), assignment_id(page.text)))
    login(client, "tess")
    page = client.get("/rate/proj")
    assert 'data-testid="waiting"' in page.text and 'data-testid="empty"' not in page.text
    assert "Waiting for other raters" in page.text and "1 pair left here is" in page.text
    assert 'hx-get="/rate/proj"' in page.text and 'hx-trigger="every 10s"' in page.text
    assert 'name="assignment_id"' not in page.text.split('id="undo-form"')[0]
    for other, token, aid in holders:
        answer = htmx_post(other, "/rate/proj/judgments", token, {"assignment_id": aid, "pick": 1})
        assert answer.status_code == 200
    page = client.get("/rate/proj", headers={"HX-Request": "true"})
    assert 'data-testid="empty"' in page.text and "All done here" in page.text
    assert _count(app) == 2


def test_both_bad_alone_is_stored(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app, pairs=2)
    login(client, "rita")
    page = client.get("/rate/proj")
    assert "Enter</kbd> is a complete answer" in page.text  # the key list says so
    token, aid = csrf_from(page.text), assignment_id(page.text)
    response = htmx_post(client, "/rate/proj/judgments", token, {"assignment_id": aid, "both_bad": "true"})
    assert response.status_code == 200 and assignment_id(response.text) != aid
    with app.state.sessionmaker() as session:
        stored = session.scalars(select(Judgment)).one()
        assert (stored.choice.value, stored.strength, stored.both_bad) == ("tie", 0, True)
    undone = htmx_post(client, "/rate/proj/undo", token, {})
    assert re.search(r'name="both_bad" value="true" data-key="x"\s+checked', undone.text)
