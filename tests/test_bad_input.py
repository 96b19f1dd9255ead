"""Bad input gets a clear answer and stores nothing.

Oversized uploads and request bodies: 413. Malformed import files: 422 with the line and field
of each problem. Unknown enum values and wrong types, in forms and in the API: 422 naming the
field. After each, every table that the request could have written to has the rows it had.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.models import (
    ApiToken,
    Comparison,
    Completion,
    Demonstration,
    Judgment,
    ModelKind,
    ModelVersion,
    Project,
    Prompt,
    Role,
    Run,
    User,
)
from app.services import tokens
from tests.conftest import make_settings
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import assignment_id, csrf_from, htmx_post, login

LIMIT = 1024 * 1024  # MAX_UPLOAD_BYTES here; the whole request may be 1 MB more (form fields)
COUNTED = (Project, Prompt, Completion, Comparison, Judgment, Demonstration, User, Run, ApiToken)


@pytest.fixture
def small_app(db_url: str) -> Iterator[Any]:
    from app.web.app import create_app

    application = create_app(make_settings(db_url, max_upload_bytes=LIMIT))
    with application.state.sessionmaker() as session, session.begin():
        project = make_project(session, "bad", overlap=1)
        for k in range(3):
            make_pair(session, project, f"question {k}", f"answer a{k}", f"answer b{k}")
        make_user(session, "ada", Role.admin)
        make_user(session, "rita", Role.rater)
        rex = make_user(session, "rex", Role.researcher)
        application.state.api_token = tokens.create_token(session, user=rex, name="script")[1]
        session.add(ModelVersion(name="base", kind=ModelKind.policy, uri="/models/base"))
    yield application
    application.state.engine.dispose()


@pytest.fixture
def web(small_app: Any) -> Iterator[TestClient]:
    with TestClient(small_app) as test_client:
        yield test_client


def counts(app: Any) -> dict[str, int]:
    with app.state.sessionmaker() as session:
        return {m.__tablename__: session.scalar(select(func.count()).select_from(m)) for m in COUNTED}


def _problems(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]  # type: ignore[no-any-return]


def _import(client: TestClient, token: str, name: str, body: bytes, kind: str = "pairs") -> Any:
    return client.post(
        "/admin/projects/bad/import",
        data={"kind": kind, "csrf_token": token},
        files={"file": (name, body, "application/octet-stream")},
    )


def test_oversized_uploads_and_bodies_get_413(small_app: Any, web: TestClient) -> None:
    login(web, "ada")
    token = csrf_from(web.get("/admin/projects/bad/import").text)
    before = counts(small_app)

    # A file over MAX_UPLOAD_BYTES, in a request the server reads: the import page says so.
    line = json.dumps({"prompt": "p" * 100, "completion_a": "a", "completion_b": "b"}) + "\n"
    big_file = (line * (LIMIT // len(line) + 2)).encode()
    page = _import(web, token, "pairs.jsonl", big_file)
    assert page.status_code == 413
    assert "pairs.jsonl is larger than the 1 MB limit" in page.text
    assert "Nothing was imported" in page.text

    # A body over the request limit, announced by Content-Length: refused before it is read.
    huge = b"x" * (LIMIT + 1024 * 1024 + 1)
    announced = web.post(
        "/admin/projects/bad/import",
        content=huge,
        headers={"content-type": "application/octet-stream", "X-CSRF-Token": token},
    )
    assert announced.status_code == 413 and "too large" in announced.text

    # The same without Content-Length (chunked): refused while it streams in.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 256 * 1024):
            yield huge[start : start + 256 * 1024]

    streamed = web.post(
        "/rate/bad/judgments",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded", "X-CSRF-Token": token},
    )
    assert streamed.status_code == 413 and "too large" in streamed.text
    for refused in (announced, streamed):  # the refusal carries the security headers too
        assert refused.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in refused.headers["content-security-policy"]
    assert counts(small_app) == before


def test_malformed_files_are_refused_with_line_numbers(small_app: Any, web: TestClient) -> None:
    login(web, "ada")
    token = csrf_from(web.get("/admin/projects/bad/import").text)
    before = counts(small_app)
    good = json.dumps({"prompt": "Fine", "completion_a": "yes", "completion_b": "no"})
    wrong_type = json.dumps({"prompt": 5, "completion_a": "a", "completion_b": "b"})
    cases = [
        # (file name, body, what the answer must name)
        ("broken.jsonl", f'{good}\n{{"prompt": "cut off\n{good}\n', ["line 2"]),
        ("types.jsonl", f'{good}\n{good.replace("yes", "also")}\n{wrong_type}\n', ["line 3", "prompt"]),
        ("missing.csv", "prompt,completion_a\nSay hi,Hi!\n", ["completion_b"]),
        ("gold.csv", "prompt,completion_a,completion_b,gold\nSay hi,Hi!,Hello.,maybe\n", ["line 2", "gold"]),
        ("binary.jsonl", "\x00\x01\x02", ["line 1"]),
        ("bytes.csv", b"prompt,completion_a,completion_b\n\xff\xfe,a,b\n", []),
        ("notes.txt", good, []),
    ]  # fmt: skip
    for name, body, named in cases:
        data = body if isinstance(body, bytes) else body.encode()
        response = _import(web, token, name, data)
        assert response.status_code == 422, (name, response.status_code)
        assert "Nothing was stored" in response.text, name
        for words in named:
            assert words in response.text, (name, words, response.text[-2000:])
    assert counts(small_app) == before


def test_unknown_values_and_wrong_types_name_the_field(small_app: Any, web: TestClient) -> None:
    login(web, "ada")
    token = csrf_from(web.get("/admin/users").text)
    json_accept = {"accept": "application/json", "X-CSRF-Token": token}
    before = counts(small_app)

    # Forms of the admin pages.
    wizard = web.post("/admin/users", data={"username": "merlin", "role": "wizard"}, headers=json_accept)
    assert [p["field"] for p in _problems(wizard)] == ["role"]
    scale = web.post(
        "/admin/projects",
        data={"slug": "newproj", "name": "New", "scale": "ten", "overlap": "two", "csrf_token": token},
    )
    assert scale.status_code == 422 and "scale" in scale.text and "overlap" in scale.text
    kind = web.post("/admin/runs", data={"kind": "magic", "project": "bad", "csrf_token": token})
    assert kind.status_code == 422 and "kind" in kind.text
    config = web.post(
        "/admin/runs",
        data={"kind": "sft", "project": "bad", "base_model_id": "1", "learning_rate": "fast",
              "csrf_token": token},
    )  # fmt: skip
    assert config.status_code == 422 and "learning_rate" in config.text
    active = web.post("/admin/users/1/active", data={"active": "perhaps"}, headers=json_accept)
    assert [p["field"] for p in _problems(active)] == ["active"]
    not_an_id = web.post("/admin/users/abc/reset-password", headers=json_accept)
    assert [p["field"] for p in _problems(not_an_id)] == ["path.user_id"]

    # The rating form.
    web.cookies.clear()
    login(web, "rita")
    page = web.get("/rate/bad")
    token = csrf_from(page.text)
    pair = assignment_id(page.text)
    headers = {"accept": "application/json", "X-CSRF-Token": token}
    wrong_id = web.post("/rate/bad/judgments", data={"assignment_id": "first", "pick": "1"}, headers=headers)
    assert [p["field"] for p in _problems(wrong_id)] == ["assignment_id"]
    wrong_pick = web.post("/rate/bad/judgments", data={"assignment_id": pair, "pick": "A"}, headers=headers)
    assert [p["field"] for p in _problems(wrong_pick)] == ["pick"]
    off_scale = htmx_post(web, "/rate/bad/judgments", token, {"assignment_id": pair, "pick": "7"})
    assert off_scale.status_code == 422 and "pick" in off_scale.text.lower()
    too_long = web.post(
        "/rate/bad/judgments",
        data={"assignment_id": pair, "pick": "1", "rationale": "r" * 20_001},
        headers=headers,
    )
    assert [p["field"] for p in _problems(too_long)] == ["rationale"]
    missing = web.post("/rate/bad/judgments", data={"pick": "1"}, headers=headers)
    assert [p["field"] for p in _problems(missing)] == ["assignment_id"]

    # The API.
    bearer = {"Authorization": f"Bearer {small_app.state.api_token}"}
    url = "/api/v1/projects/bad/comparisons"
    for params, field in [
        ({"aggregation": "vibes"}, "query.aggregation"),
        ({"format": "xlsx"}, "query.format"),
        ({"test_fraction": "lots"}, "query.test_fraction"),
        ({"min_agreement": "2"}, "query.min_agreement"),
        ({"split_seed": "-1"}, "query.split_seed"),
        ({"date_from": "yesterday"}, "query.date_from"),
        ({"split": "validation"}, "query.split"),
        ({"colour": "red"}, "query.colour"),
    ]:
        answer = web.get(url, params=params, headers=bearer)
        assert [p["field"] for p in _problems(answer)] == [field], params
    assert counts(small_app) == before


def test_a_refused_judgment_changes_nothing(small_app: Any, web: TestClient) -> None:
    """A judgment refused for a bad field stores nothing, and the pair stays the rater's."""
    login(web, "rita")
    page = web.get("/rate/bad")
    token, pair = csrf_from(page.text), assignment_id(page.text)
    before = counts(small_app)
    refused = htmx_post(web, "/rate/bad/judgments", token, {"assignment_id": pair, "pick": "9"})
    assert refused.status_code == 422
    assert counts(small_app) == before
    assert assignment_id(refused.text) == pair  # shown again, with the error
    stored = htmx_post(web, "/rate/bad/judgments", token, {"assignment_id": pair, "pick": "1"})
    assert stored.status_code == 200
    after = counts(small_app)
    assert after["judgments"] == before["judgments"] + 1
    assert {k: v for k, v in after.items() if k != "judgments"} == {
        k: v for k, v in before.items() if k != "judgments"
    }


def test_every_documented_value_is_accepted(small_app: Any, web: TestClient) -> None:
    """The other side of naming bad values: each value the schema offers is taken as it is."""
    bearer = {"Authorization": f"Bearer {small_app.state.api_token}"}
    for url in ("/api/v1/projects/bad/comparisons", "/api/v1/projects/bad/demos"):
        for split in ("all", "train", "test"):
            answer = web.get(url, params={"split": split, "format": "csv"}, headers=bearer)
            assert answer.status_code == 200, (url, split, answer.text)
    for aggregation in ("majority", "mean_strength", "per_rater"):
        answer = web.get(
            "/api/v1/projects/bad/comparisons/archive", params={"aggregation": aggregation}, headers=bearer
        )
        assert answer.status_code == 200, (aggregation, answer.text)
