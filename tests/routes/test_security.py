"""Web security: CSRF on every state-changing route, cookie flags, sessions that end, API tokens,
security headers, and hostile usernames.

The CSRF walk reads the routes from the router, so a new form is checked without anyone adding
it here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from app.db import Base
from app.models import ApiToken, ModelKind, ModelVersion, Role, Run, User
from app.services import runs, tokens
from app.web.deps import verify_csrf
from tests.conftest import TEST_SECRET, make_settings
from tests.routes.test_authorization import app_routes
from tests.utils.factories import PASSWORD, make_pair, make_project, make_user
from tests.utils.web import csrf_from, login

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Form fields that make each form do something when the token is right: the walk sends them all
# to every route, so that a missing check would show up as a changed row.
PAYLOAD = {
    "username": "mallory", "password": PASSWORD, "role": "admin", "slug": "evil", "name": "Evil",
    "overlap": "1", "scale": "five", "kind": "generate", "project": "demo", "base_model_id": "1",
    "assignment_id": "1", "pick": "1", "active": "false", "current_password": PASSWORD,
    "new_password": "a brand new password", "confirm_password": "a brand new password",
    "min_new_judgments": "5", "method": "dpo", "enabled": "true", "is_active": "false",
}  # fmt: skip
# The launch form refuses fields its run kind does not know, so it gets the fields it reads.
RUN_FIELDS = ("kind", "project", "base_model_id")


def _payload(path: str) -> dict[str, str]:
    """The walk's payload for a route: everything, but only the launch form's own fields for it."""
    return {k: PAYLOAD[k] for k in RUN_FIELDS} if path == "/admin/runs" else PAYLOAD


def _state_changing_web_routes(app: Any) -> list[tuple[str, str, APIRoute]]:
    return [
        (method, route.path, route)
        for route in app_routes(app)
        if not route.path.startswith("/api/")
        for method in sorted(route.methods & STATE_CHANGING)
    ]


def _depends_on(route: APIRoute, call: Any) -> bool:
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        if dependency.call is call:
            return True
        stack.extend(dependency.dependencies)
    return False


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "1" if "id" in m.group(0) else "demo", path)


def _snapshot(app: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (the tables here hold a handful of rows)."""
    with app.state.sessionmaker() as session:
        return {
            table.name: sorted(map(tuple, session.execute(table.select()).all()), key=repr)
            for table in Base.metadata.sorted_tables
        }


def _seed_everything(app: Any) -> None:
    """One row behind each id the walk uses (id 1), so that each route has something to change."""
    with app.state.sessionmaker() as session, session.begin():
        admin = make_user(session, "ada", Role.admin)
        make_user(session, "rita", Role.rater)
        project = make_project(session, "demo", overlap=2)
        make_pair(session, project, "q", "a", "b")
        session.add(ModelVersion(name="base", kind=ModelKind.policy, uri="/models/base"))
        session.flush()
        tokens.create_token(session, user=admin, name="script")
        run = runs.create_run(
            session, project=project, kind=runs.RunKind.generate, base_model_id=1, config={"num_prompts": 1}
        )
        assert run.id == 1


def test_every_state_changing_route_checks_the_csrf_token(app: Any, client: TestClient) -> None:
    routes = _state_changing_web_routes(app)
    assert len(routes) >= 15, "the walk found too few routes: is it reading the router?"
    unguarded = [f"{m} {p}" for m, p, r in routes if not _depends_on(r, verify_csrf)]
    assert unguarded == [], f"state-changing routes without the CSRF dependency: {unguarded}"

    _seed_everything(app)
    assert login(client, "ada").status_code == 303
    real_token = csrf_from(client.get("/admin").text)
    before = _snapshot(app)
    wrong = []
    for method, path, _ in routes:
        url = _concrete(path)
        payload = _payload(path)
        attempts = {
            "no token": {"data": payload},
            "forged field": {"data": payload | {"csrf_token": "forged-" + real_token[7:]}},
            "forged header": {"data": payload, "headers": {"X-CSRF-Token": real_token[:-2]}},
            "empty header": {"data": payload | {"csrf_token": real_token}, "headers": {"X-CSRF-Token": ""}},
            "multipart": {"data": payload, "files": {"file": ("x.jsonl", b"{}", "application/json")}},
            "json body": {"json": payload | {"csrf_token": real_token}},
        }
        for label, kwargs in attempts.items():
            answer = client.request(method, url, follow_redirects=False, **kwargs)
            if answer.status_code != 403:
                wrong.append(f"{method} {path} ({label}): {answer.status_code}")
    assert wrong == []
    assert _snapshot(app) == before, "a request without a valid CSRF token changed the database"
    # The same session is still logged in, and the real token still works.
    assert client.get("/admin/users").status_code == 200
    made = client.post("/admin/users", data={"username": "newbie", "role": "rater", "csrf_token": real_token})
    assert made.status_code == 200 and "one-time-password" in made.text


def test_a_token_from_another_session_is_refused(app: Any, client: TestClient) -> None:
    _seed_everything(app)
    with TestClient(app) as other:
        login(other, "rita")
        stolen = csrf_from(other.get("/rate").text)
    login(client, "ada")
    answer = client.post("/admin/users", data={"username": "mallory", "role": "admin", "csrf_token": stolen})
    assert answer.status_code == 403
    with app.state.sessionmaker() as session:
        assert session.scalar(select(User).where(User.username == "mallory")) is None


@pytest.fixture
def production_app(db_url: str) -> Iterator[Any]:
    from app.web.app import create_app

    application = create_app(make_settings(db_url, environment="production"))
    yield application
    application.state.engine.dispose()


def test_production_cookies_are_secure_and_hsts_is_sent(production_app: Any) -> None:
    assert production_app.state.settings.environment == "production"
    with production_app.state.sessionmaker() as session, session.begin():
        make_user(session, "rita", Role.rater)
    with TestClient(production_app, base_url="https://testserver") as browser:
        response = login(browser, "rita")
        assert response.status_code == 303
        cookie = response.headers["set-cookie"].lower()
        for flag in ("secure", "httponly", "samesite=lax"):
            assert flag in cookie, f"{flag} missing from {cookie!r}"
        assert browser.get("/rate").status_code == 200  # the Secure cookie goes back over https
        assert response.headers["strict-transport-security"].startswith("max-age=")
    # Over plain http a browser would not send a Secure cookie back: the session does not hold.
    with TestClient(production_app, base_url="http://testserver") as plain:
        login(plain, "rita")
        assert plain.get("/rate", follow_redirects=False).status_code == 303


def test_development_cookies_are_not_secure(app: Any, client: TestClient) -> None:
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rita", Role.rater)
    cookie = login(client, "rita").headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" not in cookie
    assert "strict-transport-security" not in client.get("/login").headers


def test_a_copied_session_cookie_ends_with_a_password_change(app: Any, client: TestClient) -> None:
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rita", Role.rater)
    login(client, "rita")
    copied = client.cookies.get("rlhf_session")
    assert copied
    token = csrf_from(client.get("/account/password").text)
    changed = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": "another good password",
              "confirm_password": "another good password", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert changed.status_code == 303
    assert client.cookies.get("rlhf_session") != copied  # this browser got a new session
    assert client.get("/rate").status_code == 200
    with TestClient(app, cookies={"rlhf_session": copied}) as thief:
        assert thief.get("/rate", follow_redirects=False).headers["location"].startswith("/login")


def test_a_deactivated_account_is_logged_out_at_once(app: Any, client: TestClient) -> None:
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rita", Role.rater)
    login(client, "rita")
    assert client.get("/rate").status_code == 200
    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(User).where(User.username == "rita").values(is_active=False))
    assert client.get("/rate", follow_redirects=False).headers["location"].startswith("/login")
    assert login(client, "rita").status_code == 401


def test_login_throttling_is_per_username_and_covers_unknown_names(app: Any, client: TestClient) -> None:
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rita", Role.rater)
        make_user(session, "rex", Role.researcher)
    limit = app.state.settings.login_rate_limit
    for _ in range(limit):
        assert login(client, "nobody-here", "wrong password!").status_code == 401
    assert login(client, "nobody-here", "wrong password!").status_code == 429  # no enumeration
    for _ in range(limit):
        assert login(client, "RITA", "wrong password!").status_code == 401
    assert login(client, "rita").status_code == 429  # the name is matched without case
    assert login(client, "rex").status_code == 303  # another account is not locked out


def test_login_throttling_is_shared_by_every_web_process(app: Any, client: TestClient, db_url: str) -> None:
    """Two app instances on one database stand for two worker processes: failures on either
    count together, so more workers do not mean more guesses. A success clears the count."""
    from app.models import LoginFailure
    from app.web.app import create_app
    from tests.conftest import make_settings

    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rita", Role.rater)
    other_app = create_app(make_settings(db_url))
    limit = app.state.settings.login_rate_limit
    try:
        with TestClient(other_app) as other:
            assert login(client, "rita").status_code == 303
            for n in range(limit):
                answer = login(client if n % 2 else other, "rita", "wrong password!")
                assert answer.status_code == 401
            for each in (client, other):
                blocked = login(each, "rita")
                assert blocked.status_code == 429 and "Try again in" in blocked.text
            with app.state.sessionmaker() as session:
                assert session.scalar(select(func.count()).select_from(LoginFailure)) == limit
    finally:
        other_app.state.engine.dispose()


def test_old_login_failures_count_for_nothing_and_are_dropped(app: Any, client: TestClient) -> None:
    from datetime import timedelta

    from app.models import LoginFailure
    from app.models.types import utcnow

    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rita", Role.rater)
        # Past the per-address window (5 minutes) and the per-username one (an hour).
        long_ago = utcnow() - timedelta(minutes=61)
        for _ in range(app.state.settings.login_rate_limit):
            session.add(LoginFailure(username="rita", client="testclient", at=long_ago))
    assert login(client, "rita", "wrong password!").status_code == 401  # not 429: all expired
    with app.state.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 1  # the old ones went
    assert login(client, "rita").status_code == 303
    with app.state.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 0  # success clears


def test_login_never_redirects_off_site(app: Any, client: TestClient) -> None:
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rita", Role.rater)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        client.cookies.clear()
        page = client.get("/login")
        answer = client.post(
            "/login",
            data={
                "username": "rita",
                "password": PASSWORD,
                "next": target,
                "csrf_token": csrf_from(page.text),
            },
            follow_redirects=False,
        )
        location = answer.headers["location"]
        parts = urlsplit(location)
        assert answer.status_code == 303 and not parts.scheme and not parts.netloc, (target, location)
        assert location.startswith("/") and not location.startswith("//") and "\\" not in location


def test_api_tokens_are_hashed_scoped_and_revocable(app: Any, client: TestClient) -> None:
    with app.state.sessionmaker() as session, session.begin():
        rex = make_user(session, "rex", Role.researcher)
        row, secret = tokens.create_token(session, user=rex, name="script")
        token_id = row.id
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/projects", headers=bearer).status_code == 200
    with app.state.sessionmaker() as session:
        stored = session.get(ApiToken, token_id)
        assert stored.token_hash == tokens.hash_token(secret) and stored.token_hash != secret
        dump = " ".join(str(v) for v in session.execute(text("SELECT * FROM api_tokens")).one())
        assert secret not in dump and secret[12:] not in dump  # only a hash and a short prefix

    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(ApiToken).where(ApiToken.id == token_id).values(scopes=["other:write"]))
    unscoped = client.get("/api/v1/projects", headers=bearer)
    assert unscoped.status_code == 403 and "scope" in unscoped.json()["detail"]

    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(ApiToken).where(ApiToken.id == token_id).values(scopes=["export:read"]))
        session.execute(update(User).where(User.username == "rex").values(is_active=False))
    assert client.get("/api/v1/projects", headers=bearer).status_code == 401  # owner deactivated

    with app.state.sessionmaker() as session, session.begin():
        session.execute(update(User).where(User.username == "rex").values(is_active=True))
        tokens.revoke_token(session, user=session.get(User, rex.id), token_id=token_id)
    assert client.get("/api/v1/projects", headers=bearer).status_code == 401

    # Someone else's token cannot be revoked through the page (no such token for them).
    with app.state.sessionmaker() as session, session.begin():
        other = make_user(session, "ada", Role.admin)
        theirs, their_secret = tokens.create_token(session, user=other, name="theirs")
        their_id = theirs.id
    login(client, "rex")
    token = csrf_from(client.get("/account/tokens").text)
    assert client.post(f"/account/tokens/{their_id}/revoke", data={"csrf_token": token}).status_code == 404
    assert (
        client.get("/api/v1/projects", headers={"Authorization": f"Bearer {their_secret}"}).status_code == 200
    )


def test_the_api_ignores_the_session_cookie(app: Any, client: TestClient) -> None:
    """A logged-in browser cannot be made to call the API (no CSRF through the API)."""
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
    login(client, "ada")
    assert client.get("/admin").status_code == 200
    assert client.get("/api/v1/projects").status_code == 401


@pytest.mark.parametrize(
    ("url", "status"),
    [("/login", 200), ("/no-such-page", 404), ("/api/v1/projects", 401), ("/healthz", 200)],
)
def test_security_headers_on_every_kind_of_answer(client: TestClient, url: str, status: int) -> None:
    response = client.get(url)
    assert response.status_code == status
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"


HOSTILE_NAME = '<img src=x onerror="alert(1)">'


def test_hostile_usernames_are_escaped(app: Any, client: TestClient) -> None:
    """Usernames can come from the shell or an import: pages escape them like any text."""
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        make_user(session, HOSTILE_NAME, Role.rater)
        project = make_project(session, "demo")
        make_pair(session, project, "q", "a", "b")
    # The hostile account itself logs in and sees its own name in the header.
    with TestClient(app) as hostile:
        assert login(hostile, HOSTILE_NAME).status_code == 303
        page = hostile.get("/rate/demo")
        assert page.status_code == 200 and HOSTILE_NAME not in page.text
    login(client, "ada")
    for url in ("/admin/users", "/admin", "/admin/projects/demo"):
        page = client.get(url)
        assert page.status_code == 200
        assert HOSTILE_NAME not in page.text, url
    assert "&lt;img src=x onerror=" in client.get("/admin/users").text


def test_secret_key_is_required_in_production(db_url: str) -> None:
    from pydantic import ValidationError

    from app.config import Settings

    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(database_url=db_url, environment="production", secret_key="short")
    assert Settings(database_url=db_url, environment="production", secret_key=TEST_SECRET).https_only


def test_no_runs_were_launched_by_the_walk(app: Any, client: TestClient) -> None:
    """The walk's payload does launch a run when the token is right (so the walk can fail)."""
    _seed_everything(app)
    login(client, "ada")
    token = csrf_from(client.get("/admin").text)
    with app.state.sessionmaker() as session:
        before = session.scalar(select(func.count()).select_from(Run))
    launched = client.post(
        "/admin/runs", data=_payload("/admin/runs") | {"csrf_token": token}, follow_redirects=False
    )
    assert launched.status_code == 303
    with app.state.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Run)) == before + 1
