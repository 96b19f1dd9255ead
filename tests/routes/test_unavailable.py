"""When the database cannot be reached, requests get a clear 503 with Retry-After, not a 500."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.web.app import create_app
from tests.conftest import make_settings
from tests.utils.web import csrf_from


def test_an_unreachable_database_answers_503_for_pages_and_the_api() -> None:
    # Nothing listens on port 9: every connection attempt fails at once.
    app = create_app(make_settings("postgresql://postgres@127.0.0.1:9/nowhere"))
    with TestClient(app) as client:
        token = csrf_from(client.get("/login").text)  # the form itself needs no database
        page = client.post(
            "/login",
            data={"username": "ada", "password": "x" * 12, "csrf_token": token},
            headers={"accept": "text/html"},
        )
        assert page.status_code == 503 and page.headers["retry-after"] == "5"
        assert "nothing was saved" in page.text and "Try again" in page.text
        assert page.headers["x-content-type-options"] == "nosniff"

        api = client.get("/api/v1/projects", headers={"authorization": "Bearer rlhf_not_a_token"})
        assert api.status_code == 503 and api.headers["retry-after"] == "5"
        assert "not reachable" in api.json()["detail"]
    app.state.engine.dispose()
