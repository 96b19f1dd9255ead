"""/api/v1: bearer tokens (missing, wrong, revoked, a rater's: refused; a researcher's: works)."""

from __future__ import annotations

import io
import json
import zipfile

from app.models import Judgment, Role
from app.services import tokens
from tests.utils.factories import make_pair, make_project, make_user


def seed(app) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Users with a token each, and a project with two labeled pairs; returns name -> token."""
    with app.state.sessionmaker() as session:
        project = make_project(session, "api")
        secrets = {}
        users = {}
        for name, role in (("rex", Role.researcher), ("ada", Role.admin), ("rita", Role.rater)):
            users[name] = make_user(session, name, role)
            secrets[name] = tokens.create_token(session, user=users[name], name="script")[1]
        revoked, secrets["revoked"] = tokens.create_token(session, user=users["rex"], name="old")
        tokens.revoke_token(session, user=users["rex"], token_id=revoked.id)
        for k in range(2):
            pair = make_pair(session, project, f"q{k}", f"good {k}", f"bad {k}")
            session.add(
                Judgment(
                    comparison_id=pair.id,
                    rater_id=users["rita"].id,
                    project_id=project.id,
                    choice="A",
                    strength=2,
                    a_on_left=True,
                )  # fmt: skip
            )
        session.commit()
    return secrets


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_tokens_are_checked(app, client) -> None:  # type: ignore[no-untyped-def]
    secrets = seed(app)
    url = "/api/v1/projects"
    missing = client.get(url)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["detail"] == "Missing bearer token."
    assert client.get(url, headers=bearer("rlhf_" + "x" * 43)).status_code == 401
    assert client.get(url, headers=bearer(secrets["rex"][:-1])).status_code == 401
    assert client.get(url, headers={"Authorization": secrets["rex"]}).status_code == 401  # no scheme
    revoked = client.get(url, headers=bearer(secrets["revoked"]))
    assert revoked.status_code == 401 and revoked.json() == {"detail": "Invalid or revoked token."}
    rater = client.get(url, headers=bearer(secrets["rita"]))
    assert rater.status_code == 403 and "researchers and admins" in rater.json()["detail"]
    for name in ("rex", "ada"):
        ok = client.get(url, headers=bearer(secrets[name]))
        assert ok.status_code == 200
        assert ok.json()["data"][0] == {
            "slug": "api",
            "name": "Api",
            "judgments": 2,
            "pairs": 2,
            "demonstrations": 0,
        }
    # Export endpoints are guarded the same way.
    assert client.get("/api/v1/projects/api/comparisons").status_code == 401
    assert client.get("/api/v1/projects/api/comparisons", headers=bearer(secrets["rita"])).status_code == 403


def test_a_researcher_exports_through_the_api(app, client) -> None:  # type: ignore[no-untyped-def]
    secrets = seed(app)
    response = client.get(
        "/api/v1/projects/api/comparisons",
        params={"format": "jsonl", "test_fraction": 0},
        headers=bearer(secrets["rex"]),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [row["chosen"][0]["content"] for row in rows] == ["good 0", "good 1"]
    assert all(row["margin"] == 2.0 and row["split"] == "train" for row in rows)

    archive = client.get(
        "/api/v1/projects/api/comparisons/archive",
        params={"format": "parquet", "aggregation": "per_rater", "raters": "rita"},
        headers=bearer(secrets["rex"]),
    )
    assert archive.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert "README.md" in names and any(n.endswith(".parquet") for n in names)

    card = client.get("/api/v1/projects/api/comparisons/card", headers=bearer(secrets["rex"]))
    assert card.status_code == 200 and "## Aggregation rules" in card.text

    demos = client.get("/api/v1/projects/api/demos", params={"format": "csv"}, headers=bearer(secrets["rex"]))
    assert demos.status_code == 200 and demos.text.startswith("prompt,response")


def test_bad_options_get_json_errors(app, client) -> None:  # type: ignore[no-untyped-def]
    secrets = seed(app)
    headers = bearer(secrets["rex"])
    bad = client.get("/api/v1/projects/api/comparisons", params={"aggregation": "vibes"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"].endswith("aggregation")
    csv_messages = client.get(
        "/api/v1/projects/api/comparisons",
        params={"format": "csv", "layout": "conversational"},
        headers=headers,
    )
    assert csv_messages.status_code == 422
    unknown = client.get("/api/v1/projects/api/comparisons", params={"raters": "nobody"}, headers=headers)
    known = client.get("/api/v1/projects/api/comparisons", params={"raters": "rex"}, headers=headers)
    assert unknown.status_code == known.status_code == 200  # no username is confirmed
    assert unknown.content == known.content
    assert client.get("/api/v1/projects/nope/comparisons", headers=headers).status_code == 404


def test_the_api_is_documented(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json").json()
    assert "/api/v1/projects/{slug}/comparisons" in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    params = {p["name"] for p in schema["paths"]["/api/v1/projects/{slug}/comparisons"]["get"]["parameters"]}
    assert {"aggregation", "min_agreement", "raters", "exclude_flags", "gold", "format", "split"} <= params
