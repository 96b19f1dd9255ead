from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from app.models import Role, User
from tests.utils.factories import make_user
from tests.utils.web import csrf_from, login


def _users(app, *names_roles: tuple[str, Role]) -> None:  # type: ignore[no-untyped-def]
    factory: sessionmaker[Session] = app.state.sessionmaker
    with factory() as session, session.begin():
        for name, role in names_roles:
            make_user(session, name, role)


def test_login_lands_on_the_role_home_and_logout_ends_the_session(app, client) -> None:  # type: ignore[no-untyped-def]
    _users(app, ("ada", Role.admin), ("rita", Role.rater))
    response = login(client, "rita")
    assert response.status_code == 303 and response.headers["location"] == "/rate"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert client.get("/rate").status_code == 200
    token = csrf_from(client.get("/rate").text)
    client.post("/logout", data={"csrf_token": token})
    assert client.get("/rate", follow_redirects=False).headers["location"].startswith("/login")


def test_wrong_password_and_throttling(app, client) -> None:  # type: ignore[no-untyped-def]
    _users(app, ("rita", Role.rater))
    for _ in range(5):
        assert login(client, "rita", "wrong password!").status_code == 401
    blocked = login(client, "rita")  # even the right password waits now
    assert blocked.status_code == 429 and "Too many failed attempts" in blocked.text


def test_roles_are_checked(app, client) -> None:  # type: ignore[no-untyped-def]
    _users(app, ("rita", Role.rater), ("rex", Role.researcher))
    assert client.get("/admin", follow_redirects=False).status_code == 303  # anonymous: to login
    login(client, "rita")
    assert client.get("/admin", headers={"accept": "text/html"}).status_code == 403
    assert client.get("/projects", headers={"accept": "text/html"}).status_code == 403
    login(client, "rex")
    assert client.get("/projects").status_code == 200
    assert client.get("/rate", headers={"accept": "text/html"}).status_code == 403


def test_posts_without_csrf_token_are_refused(app, client) -> None:  # type: ignore[no-untyped-def]
    _users(app, ("rita", Role.rater))
    response = client.post("/login", data={"username": "rita", "password": "x" * 12})
    assert response.status_code == 403
    login(client, "rita")
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403


def test_login_rotates_the_session(app, client) -> None:  # type: ignore[no-untyped-def]
    _users(app, ("rita", Role.rater))
    before = csrf_from(client.get("/login").text)
    login(client, "rita")
    after = csrf_from(client.get("/account/password").text)
    assert before != after


def test_one_time_password_must_be_changed(app, client) -> None:  # type: ignore[no-untyped-def]
    _users(app, ("ada", Role.admin))
    login(client, "ada")
    page = client.get("/admin/users")
    created = client.post(
        "/admin/users",
        data={"username": "newbie", "role": "rater", "csrf_token": csrf_from(page.text)},
    )
    assert created.status_code == 200
    password = created.text.split('data-testid="one-time-password">')[1].split("<")[0]
    client.cookies.clear()
    response = login(client, "newbie", password)
    assert response.headers["location"] == "/account/password"
    # Nothing else is reachable until the one-time password is replaced.
    blocked = client.get("/rate", follow_redirects=False)
    assert blocked.status_code == 303 and blocked.headers["location"] == "/account/password"
    form = client.get("/account/password")
    changed = client.post(
        "/account/password",
        data={
            "current_password": password,
            "new_password": "my own password",
            "confirm_password": "my own password",
            "csrf_token": csrf_from(form.text),
        },
        follow_redirects=False,
    )
    assert changed.status_code == 303
    with app.state.sessionmaker() as session:
        user = session.query(User).filter_by(username="newbie").one()
        assert not user.must_change_password and user.password_hash.startswith("$argon2")


def test_security_headers(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
