"""Forwarding headers are trusted only from the proxies in FORWARDED_ALLOW_IPS, and the login
throttle also counts per username across addresses: rotating X-Forwarded-For gains nothing."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.models import LoginFailure, Role
from app.models.types import utcnow
from app.models.user import WebSession
from tests.utils.factories import PASSWORD, make_user
from tests.utils.web import csrf_from

_addresses = (f"203.0.113.{n}" for n in itertools.count(1))


def _login(client: TestClient, username: str, password: str = PASSWORD, address: str | None = None) -> Any:
    headers = {"X-Forwarded-For": address or next(_addresses)}
    page = client.get("/login", headers=headers)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(page.text)},
        headers=headers,
        follow_redirects=False,
    )


def test_forwarded_headers_from_an_untrusted_address_are_ignored(app: Any, client: TestClient) -> None:
    assert app.state.settings.forwarded_allow_ips == ""  # the default: no proxy is trusted
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rita", Role.rater)
    for _ in range(app.state.settings.login_rate_limit):
        assert _login(client, "rita", "wrong password!").status_code == 401
    blocked = _login(client, "rita")  # a fresh forwarded address, the right password
    assert blocked.status_code == 429
    with app.state.sessionmaker() as session:
        assert set(session.scalars(select(LoginFailure.client))) == {"testclient"}


@pytest.fixture
def proxied_app(db_url: str):  # type: ignore[no-untyped-def]
    from app.web.app import create_app
    from tests.conftest import make_settings

    application = create_app(make_settings(db_url, forwarded_allow_ips="testclient", login_user_limit=8))
    yield application
    application.state.engine.dispose()


def test_rotating_forwarded_addresses_meet_the_per_username_throttle(proxied_app: Any) -> None:
    app = proxied_app
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "rita", Role.rater)
        make_user(session, "rex", Role.rater)
    with TestClient(app) as client:
        # Behind a trusted proxy, each forwarded address is its own client...
        assert _login(client, "rex", address="198.51.100.7").status_code == 303
        with app.state.sessionmaker() as session:
            assert session.scalar(select(WebSession.address)) == "198.51.100.7"
        # ...but the name's failures from every address add up.
        for _ in range(8):
            assert _login(client, "rita", "wrong password!").status_code == 401
        blocked = _login(client, "rita")  # right password, fresh address: waits too
        assert blocked.status_code == 429 and "30 seconds" in blocked.text
        assert _login(client, "rex").status_code == 303  # other accounts are untouched

        def age(seconds: float) -> None:
            with app.state.sessionmaker() as session, session.begin():
                for failure in session.scalars(select(LoginFailure)):
                    failure.at -= timedelta(seconds=seconds)

        age(31)  # the wait is over: one more try, which fails and doubles the wait
        assert _login(client, "rita", "wrong password!").status_code == 401
        assert "60 seconds" in _login(client, "rita").text
        age(61)
        assert _login(client, "rita").status_code == 303  # never locked out for good

        # However many failures, the wait is at most 15 minutes.
        with app.state.sessionmaker() as session, session.begin():
            session.add_all(
                LoginFailure(username="rita", client=f"192.0.2.{n}", at=utcnow()) for n in range(40)
            )
        assert "900 seconds" in _login(client, "rita").text
        age(901)
        assert _login(client, "rita").status_code == 303


def test_serve_leaves_forwarding_headers_to_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from app.cli.serving import serve

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    serve(host="127.0.0.1", port=8000, workers=1)
    assert seen["proxy_headers"] is False
