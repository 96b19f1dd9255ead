"""The audit log: one event per action, in the action's transaction; append-only on PostgreSQL;
the admin page's filters; no secret in any event's details."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from app.models import AuditEvent, Role, User
from app.services import audit
from tests.utils.factories import make_project, make_user
from tests.utils.web import csrf_from, login

ALL = {"user.create", "run.launch", "run.cancel", "export.comparisons"}


def _events(app) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def _admin(app, client) -> str:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        make_project(session, "proj")
        make_project(session, "other")
    login(client, "ada")
    return csrf_from(client.get("/admin/users").text)


def test_an_action_writes_one_event_and_a_refused_one_none(app, client) -> None:  # type: ignore[no-untyped-def]
    token = _admin(app, client)
    created = client.post("/admin/users", data={"username": "rita", "role": "rater", "csrf_token": token})
    assert created.status_code == 200, created.text
    one_time = re.search(r'data-testid="one-time-password">([^<]+)<', created.text)
    assert one_time
    events = _events(app)
    assert [(e.action, e.actor_name, e.actor_kind, e.target_type, e.target_id) for e in events] == [
        ("user.create", "ada", "web", "user", "rita")
    ]
    assert events[0].details == {"role": "rater"}
    # A refused action (the user exists) rolls back: no event.
    again = client.post("/admin/users", data={"username": "rita", "role": "rater", "csrf_token": token})
    assert again.status_code == 422
    assert len(_events(app)) == 1

    page = client.get("/admin/projects/proj")
    members = client.post(
        "/admin/projects/proj/members",
        data={"usernames": "rita", "groups": "", "csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )
    assert members.status_code == 303
    event = _events(app)[-1]
    assert event.action == "project.members.add" and event.details["users"] == ["rita"]
    with app.state.sessionmaker() as session:
        assert session.get(type(event), event.id).project_id is not None
    with app.state.sessionmaker() as session:
        rita_id = session.scalar(select(User.id).where(User.username == "rita"))
    reset = client.post(f"/admin/users/{rita_id}/reset-password", data={"csrf_token": token})
    assert reset.status_code == 200 and _events(app)[-1].action == "user.reset_password"
    dumped = json.dumps([[e.details, e.target_id] for e in _events(app)])
    assert one_time.group(1) not in dumped
    secrets = re.findall(r'data-testid="one-time-password">([^<]+)<', reset.text)
    assert all(secret not in dumped for secret in secrets)


def test_a_rolled_back_transaction_leaves_no_event(app) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session:
        audit.record(session, audit.Actor.cli(), "user.create", target=("user", "ghost"))
        session.flush()
        session.rollback()
    with app.state.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_postgresql_refuses_changing_or_deleting_an_event(pg_url: str) -> None:
    from app.db import make_engine, make_sessionmaker

    engine = make_engine(pg_url)
    factory = make_sessionmaker(engine)
    with factory() as session, session.begin():
        audit.record(session, audit.Actor.cli(), "user.create", target=("user", "x"))
    for statement in ("UPDATE audit_events SET action = 'nothing'", "DELETE FROM audit_events"):
        with factory() as session, pytest.raises(DBAPIError), session.begin():
            session.execute(text(statement))
    with factory() as session:
        assert session.scalars(select(AuditEvent.action)).all() == ["user.create"]
    engine.dispose()


def test_the_audit_page_filters(app, client) -> None:  # type: ignore[no-untyped-def]
    _admin(app, client)
    old = datetime(2020, 1, 2, 12, tzinfo=UTC)
    with app.state.sessionmaker() as session, session.begin():
        from app.services.projects import get_project

        proj, other = get_project(session, "proj"), get_project(session, "other")
        rows = [
            ("ada", "user.create", None, None),
            ("ada", "run.launch", proj, None),
            ("bob", "run.cancel", other, None),
            ("ada", "export.comparisons", proj, old),
        ]
        for actor, action, project, at in rows:
            event = audit.record(session, audit.Actor(None, actor, "web"), action, project=project)
            if at is not None:
                event.at = at

    def shown(**params: str) -> set[str]:
        page = client.get("/admin/audit", params=params)
        assert page.status_code == 200
        return set(re.findall(r"<td><code>([a-z._]+)</code></td>", page.text))

    assert shown() == ALL
    assert shown(actor="bob") == {"run.cancel"}
    assert shown(action="run") == {"run.launch", "run.cancel"}
    assert shown(action="run.l") == {"run.launch"}
    assert shown(project="proj") == {"run.launch", "export.comparisons"}
    assert shown(project="nothing-here") == set()
    assert shown(until="2021-01-01") == {"export.comparisons"}
    assert shown(since="2021-01-01") == {"user.create", "run.launch", "run.cancel"}
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert shown(since=tomorrow) == set()


def test_the_audit_page_is_for_admins_only(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rex", Role.researcher)
    login(client, "rex")
    assert client.get("/admin/audit", follow_redirects=False).status_code in (303, 403, 404)
