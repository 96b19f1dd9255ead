"""Sessions end server-side: a copy of the cookie stops working the moment the session ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.models import Role, User
from app.models.types import utcnow
from app.models.user import WebSession
from tests.utils.factories import PASSWORD, make_pair, make_project, make_user
from tests.utils.web import csrf_from, login

COOKIE = "rlhf_session"


def _logged_in(app: Any, client: TestClient, name: str = "rita", role: Role = Role.rater) -> str:
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, name, role)
    assert login(client, name).status_code == 303
    copied = client.cookies.get(COOKIE)
    assert copied
    return copied


def _works(app: Any, cookie: str, path: str = "/rate") -> bool:
    with TestClient(app, cookies={COOKIE: cookie}) as other:
        return other.get(path, follow_redirects=False).status_code == 200


def _user_id(app: Any, name: str) -> int:
    with app.state.sessionmaker() as session:
        return session.scalar(select(User.id).where(User.username == name))  # type: ignore[return-value]


def test_logout_ends_the_session_for_a_copied_cookie(app: Any, client: TestClient) -> None:
    copied = _logged_in(app, client, "ada", Role.admin)
    assert _works(app, copied, "/admin/users")
    token = csrf_from(client.get("/admin/users").text)
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert not _works(app, copied, "/admin/users")
    with TestClient(app, cookies={COOKIE: copied}) as thief:  # nor can it create a user
        page = thief.get("/login")
        created = thief.post(
            "/admin/users",
            data={"username": "mallory", "role": "admin", "csrf_token": csrf_from(page.text)},
            follow_redirects=False,
        )
        assert created.status_code == 303 and created.headers["location"].startswith("/login")
    assert _user_id(app, "mallory") is None


def test_password_change_ends_every_other_session(app: Any, client: TestClient) -> None:
    copied = _logged_in(app, client)
    token = csrf_from(client.get("/account/password").text)
    changed = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": "another good password",
              "confirm_password": "another good password", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert changed.status_code == 303
    assert client.get("/rate").status_code == 200  # this browser carries on in a new session
    assert not _works(app, copied)


def test_deactivation_and_password_reset_end_the_sessions(app: Any, client: TestClient) -> None:
    rita = _logged_in(app, TestClient(app), "rita")
    _logged_in(app, client, "ada", Role.admin)
    token = csrf_from(client.get("/admin/users").text)
    rita_id = _user_id(app, "rita")
    client.post(f"/admin/users/{rita_id}/active", data={"csrf_token": token})
    assert not _works(app, rita)
    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(User).where(User.id == rita_id).values(is_active=True))
    rita = _logged_in(app, TestClient(app), "rex")
    rex_id = _user_id(app, "rex")
    assert client.post(f"/admin/users/{rex_id}/reset-password", data={"csrf_token": token}).status_code == 200
    assert not _works(app, rita)


def test_an_admin_signs_a_user_out_everywhere(app: Any, client: TestClient) -> None:
    first = _logged_in(app, TestClient(app), "rita")
    with TestClient(app) as second_browser:
        assert login(second_browser, "rita").status_code == 303
        second = second_browser.cookies.get(COOKIE)
    _logged_in(app, client, "ada", Role.admin)
    page = client.get("/admin/users")
    assert "Sign out everywhere" in page.text
    rita_id = _user_id(app, "rita")
    # A rater cannot do it, nor a form without the CSRF token.
    with TestClient(app, cookies={COOKIE: first}) as rater:
        rater_token = csrf_from(rater.get("/account/password").text)
        refused = rater.post(f"/admin/users/{rita_id}/signout", data={"csrf_token": rater_token})
        assert refused.status_code == 403
    assert client.post(f"/admin/users/{rita_id}/signout").status_code == 403
    assert _works(app, first) and _works(app, second)
    token = csrf_from(page.text)
    done = client.post(f"/admin/users/{rita_id}/signout", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    assert not _works(app, first) and not _works(app, second)
    assert client.get("/admin/users").status_code == 200  # the admin's own session is untouched
    with TestClient(app) as again:  # and rita can log in again
        assert login(again, "rita").status_code == 303


def test_idle_and_absolute_timeouts(app: Any, client: TestClient) -> None:
    copied = _logged_in(app, client)
    idle = app.state.settings.session_idle_timeout_s
    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(seconds=idle - 120)))
    assert _works(app, copied)  # still within the idle timeout, and the visit counts
    with app.state.sessionmaker() as session:
        seen = session.scalar(select(WebSession.last_seen_at))
        assert seen is not None and utcnow() - seen < timedelta(seconds=60)
    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(seconds=idle + 1)))
    assert not _works(app, copied)

    copied = _logged_in(app, TestClient(app), "rex")
    assert _works(app, copied)
    with app.state.sessionmaker() as session, session.begin():
        session.execute(
            update(WebSession)
            .where(WebSession.user_id == _user_id(app, "rex"))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert not _works(app, copied)  # active a moment ago, but past its lifetime


def test_the_workbench_keeps_the_same_session_rules(app: Any, client: TestClient) -> None:
    """GET /rate/{slug} reads the session in its own statement (app/web/rater_request.py): the
    visit is written once a minute at most, and an idle or ended session is refused."""
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "proj")
        make_pair(session, project, "question", "answer a", "answer b")
    copied = _logged_in(app, client)
    with app.state.sessionmaker() as session:
        before = session.scalar(select(WebSession.last_seen_at))
    assert _works(app, copied, "/rate/proj")
    with app.state.sessionmaker() as session:
        assert session.scalar(select(WebSession.last_seen_at)) == before  # seen under a minute ago
    idle = app.state.settings.session_idle_timeout_s
    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(seconds=idle - 120)))
    assert _works(app, copied, "/rate/proj")  # still within the idle timeout, and the visit counts
    with app.state.sessionmaker() as session:
        seen = session.scalar(select(WebSession.last_seen_at))
        assert seen is not None and utcnow() - seen < timedelta(seconds=60)
    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(seconds=idle + 1)))
    assert not _works(app, copied, "/rate/proj")
    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(WebSession).values(last_seen_at=utcnow(), ended_at=utcnow()))
    assert not _works(app, copied, "/rate/proj")


def test_requests_do_not_write_the_session_row_each_time(app: Any, client: TestClient) -> None:
    _logged_in(app, client)
    with app.state.sessionmaker() as session:
        before = session.scalar(select(WebSession.last_seen_at))
    client.get("/rate")
    with app.state.sessionmaker() as session:
        assert session.scalar(select(WebSession.last_seen_at)) == before
        row = session.scalars(select(WebSession)).one()
        assert len(row.id) == 64 and row.id != client.cookies.get(COOKIE)  # only the hash is stored
        assert row.user_agent and row.expires_at > utcnow() + timedelta(days=13)
