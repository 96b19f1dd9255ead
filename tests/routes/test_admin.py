from __future__ import annotations

import json

from sqlalchemy import func, select

from app.models import Comparison, Project, Role
from tests.utils.factories import make_user
from tests.utils.web import csrf_from, login


def _admin(app, client) -> str:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
    login(client, "ada")
    return csrf_from(client.get("/admin/projects/new").text)


def _pairs(app) -> int:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session:
        return session.scalar(select(func.count()).select_from(Comparison))


def test_create_edit_and_import(app, client) -> None:  # type: ignore[no-untyped-def]
    token = _admin(app, client)
    bad = client.post(
        "/admin/projects",
        data={"slug": "Bad Slug!", "name": "x", "overlap": "0", "csrf_token": token},
    )
    assert bad.status_code == 422 and "slug" in bad.text and "overlap" in bad.text
    created = client.post(
        "/admin/projects",
        data={"slug": "helpful", "name": "Helpfulness", "overlap": "2", "scale": "three",
              "flags": "harmful\nfactual error", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert created.status_code == 303 and created.headers["location"] == "/admin/projects/helpful"
    with app.state.sessionmaker() as session:
        project = session.scalars(select(Project).where(Project.slug == "helpful")).one()
        assert project.overlap == 2 and project.flags == ["harmful", "factual error"]

    lines = [
        {"prompt": "Say hi", "completion_a": "Hi!", "completion_b": "Hello there."},
        {"prompt": "Say bye", "completion_a": "Bye", "completion_b": ""},
        {"prompt": "Count", "completion_a": "1 2 3", "completion_b": "one two"},
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    rejected = client.post(
        "/admin/projects/helpful/import",
        data={"kind": "pairs", "csrf_token": token},
        files={"file": ("pairs.jsonl", body, "application/jsonl")},
    )
    assert rejected.status_code == 422
    assert "line 2" in rejected.text and "completion_b" in rejected.text
    assert "Nothing was stored" in rejected.text
    assert _pairs(app) == 0

    csv_body = b"prompt,completion_a,completion_b,gold\nSay hi,Hi!,Hello there.,A\nCount,1 2 3,one two,\n"
    accepted = client.post(
        "/admin/projects/helpful/import",
        data={"kind": "pairs", "csrf_token": token},
        files={"file": ("pairs.csv", csv_body, "text/csv")},
    )
    assert accepted.status_code == 200 and "2 rows read, 2 pairs created" in accepted.text
    again = client.post(
        "/admin/projects/helpful/import",
        data={"kind": "pairs", "csrf_token": token},
        files={"file": ("pairs.csv", csv_body, "text/csv")},
    )
    assert "0 pairs created" in again.text and "2 duplicates skipped" in again.text
    assert _pairs(app) == 2

    page = client.get("/admin/projects/helpful")
    assert "2</strong> pairs" in page.text

    hh = json.dumps({"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello!",
                     "rejected": "\n\nHuman: Hi?\n\nAssistant: Go away."}).encode()  # fmt: skip
    labeled = client.post(
        "/admin/projects/helpful/import",
        data={"kind": "preferences", "csrf_token": token},
        files={"file": ("hh.jsonl", hh, "application/jsonl")},
    )
    assert labeled.status_code == 200, labeled.text
    assert _pairs(app) == 3


def test_create_rater_and_counts(app, client) -> None:  # type: ignore[no-untyped-def]
    token = _admin(app, client)
    response = client.post("/admin/users", data={"username": "rita", "role": "rater", "csrf_token": token})
    assert response.status_code == 200 and 'data-testid="one-time-password"' in response.text
    taken = client.post("/admin/users", data={"username": "RITA", "role": "rater", "csrf_token": token})
    assert taken.status_code == 422 and "taken" in taken.text
    assert "rita" in client.get("/admin/users").text
