"""Headers on every answer (errors too), no-store on secrets, HEAD wherever GET is served, API
docs without a CDN, and no inline styles from markdown."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from app.models import Role
from app.web.render import render_markdown
from tests.routes.test_authorization import _concrete, app_routes
from tests.utils.factories import make_project, make_user
from tests.utils.web import csrf_from, login


def test_a_500_carries_the_security_headers(app: Any) -> None:
    @app.get("/boom-for-the-test")
    def boom() -> None:
        raise RuntimeError("forced failure")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom-for-the-test")
    assert response.status_code == 500
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_pages_with_a_secret_are_not_stored(app: Any, client: TestClient) -> None:
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        rita = make_user(session, "rita", Role.rater)
        rita_id = rita.id
    login(client, "ada")
    token = csrf_from(client.get("/admin/users").text)
    created = client.post("/admin/users", data={"username": "newbie", "role": "rater", "csrf_token": token})
    assert created.status_code == 200 and "one-time" in created.text.lower()
    assert created.headers["cache-control"] == "no-store"
    reset = client.post(f"/admin/users/{rita_id}/reset-password", data={"csrf_token": token})
    assert reset.status_code == 200 and reset.headers["cache-control"] == "no-store"
    new_token = client.post("/account/tokens", data={"name": "laptop", "csrf_token": token})
    assert new_token.status_code == 200 and new_token.headers["cache-control"] == "no-store"
    assert "no-store" not in client.get("/account/tokens").headers.get("cache-control", "")


def test_head_is_answered_wherever_get_is(app: Any, client: TestClient) -> None:
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        make_project(session, "demo")
    paths = sorted({_concrete(r.path) for r in app_routes(app) if "GET" in r.methods})
    assert len(paths) > 20
    wrong = []
    for who in (None, "ada"):
        if who:
            login(client, who)
        for path in [*paths, "/static/css/app.css", "/openapi.json"]:
            get = client.get(path, follow_redirects=False)
            head = client.head(path, follow_redirects=False)
            if head.status_code != get.status_code or head.content or head.status_code == 405:
                wrong.append(f"HEAD {path} as {who}: {head.status_code} (GET: {get.status_code})")
            elif head.headers.get("content-type") != get.headers.get("content-type"):
                wrong.append(f"HEAD {path} as {who}: content-type differs")
    assert wrong == []


def test_api_docs_need_no_cdn(client: TestClient) -> None:
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    schema = client.get("/openapi.json")
    assert schema.status_code == 200 and schema.json()["info"]["title"] == "RLHF Studio"


def test_markdown_tables_carry_no_style_attributes() -> None:
    html = str(render_markdown("| a | b |\n|:--|--:|\n| 1 | 2 |\n\n<p style='color:red'>x</p>"))
    assert "<table>" in html and "<td>" in html
    assert not re.search(r"<[^>]*\sstyle=", html)
