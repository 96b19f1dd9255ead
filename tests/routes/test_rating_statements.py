"""The rating path's SQL statements per request, pinned (counted as bench/rating_load.py counts
them, with a ``before_cursor_execute`` listener): a change that adds a round trip to the hot path
fails here. Where the counts come from is in app/services/rating/ (claim_next, submit_judgment,
progress) and app/services/membership.py (rating_seat)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.models import Role
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import assignment_id, csrf_from, htmx_post, login

# The session with its user and the project with the rater's member rows, the rater's leases,
# the candidate pair (locked), the recount with the lease's insert, the pair's texts with the
# rater's progress.
GET_CLAIMING = 5
# The same without the claim: the session with the project, the lease, the texts with the progress.
GET_HOLDING = 3
# The session with the project; on PostgreSQL the lease closed, the judgment inserted and the
# pair's count raised in one statement, which also tells that the rater holds no other lease, so
# the next pair's claim skips reading them (candidate, insert, texts with progress); on SQLite the
# three as separate statements, then the next pair as a claiming GET takes it.
POST_JUDGMENT = {"postgresql": 5, "sqlite": 8}


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE; PostgreSQL's is implicit
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _listing(statements: list[str]) -> str:
    return "\n".join(f"{n}. {s[:160]}" for n, s in enumerate(statements, start=1))


def test_rating_path_statement_counts(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "proj")
        for i in range(3):
            make_pair(session, project, f"question {i}", f"answer a{i}", f"answer b{i}")
        make_user(session, "rita", Role.rater)
    login(client, "rita")
    engine = app.state.engine

    with _statements(engine) as claiming:
        page = client.get("/rate/proj")
    assert page.status_code == 200 and 'id="workbench"' in page.text
    assert len(claiming) == GET_CLAIMING, _listing(claiming)

    with _statements(engine) as holding:
        again = client.get("/rate/proj")
    assert assignment_id(again.text) == assignment_id(page.text)
    assert len(holding) == GET_HOLDING, _listing(holding)

    token = csrf_from(page.text)
    with _statements(engine) as posting:
        answer = htmx_post(
            client, "/rate/proj/judgments", token, {"assignment_id": assignment_id(page.text), "pick": 1}
        )
    assert answer.status_code == 200 and assignment_id(answer.text) != assignment_id(page.text)
    assert len(posting) == POST_JUDGMENT[engine.dialect.name], _listing(posting)
