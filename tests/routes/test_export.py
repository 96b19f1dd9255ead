"""The export page (form, preview, download) and the API-token page."""

from __future__ import annotations

import io
import json
import re
import zipfile

from app.models import Judgment, Role
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import csrf_from, login


def seed(app) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session:
        project = make_project(session, "page", flags=["unsafe"])
        make_user(session, "rex", Role.researcher)
        rita = make_user(session, "rita", Role.rater)
        for k in range(3):
            pair = make_pair(session, project, f"q{k}", f"good {k}", f"bad {k}")
            session.add(
                Judgment(
                    comparison_id=pair.id,
                    rater_id=rita.id,
                    project_id=project.id,
                    choice="A",
                    strength=1,
                    a_on_left=False,
                )  # fmt: skip
            )
        session.commit()


FORM = {
    "project": "page", "what": "comparisons", "format": "jsonl", "layout": "", "aggregation": "majority",
    "min_agreement": "0", "date_from": "", "raters": "", "exclude_flags": "", "test_fraction": "0",
}  # fmt: skip


def test_researcher_previews_and_downloads(app, client) -> None:  # type: ignore[no-untyped-def]
    seed(app)
    login(client, "rex")
    page = client.get("/export")
    assert page.status_code == 200 and 'hx-get="/export/preview"' in page.text and "page" in page.text

    preview = client.get("/export/preview", params=FORM, headers={"HX-Request": "true"})
    assert preview.status_code == 200
    assert "Preview: 3 rows" in preview.text and "good 0" in preview.text
    assert "Aggregation rules" in preview.text and "<html" not in preview.text

    download = client.get("/export/download", params=FORM)
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    assert archive.namelist() == ["data/train.jsonl", "README.md"]
    assert len(archive.read("data/train.jsonl").splitlines()) == 3

    single = client.get("/export/download", params=FORM | {"archive": "0", "format": "csv"})
    assert single.status_code == 200 and single.text.startswith("prompt,chosen,rejected")


def test_bad_options_are_explained(app, client) -> None:  # type: ignore[no-untyped-def]
    seed(app)
    login(client, "rex")
    bad = client.get("/export/preview", params=FORM | {"format": "csv", "layout": "conversational"})
    assert bad.status_code == 422 and "CSV holds plain text" in bad.text
    # An unknown name answers like a known one without judgments: no username is confirmed.
    unknown = client.get("/export/preview", params=FORM | {"raters": "ghost"})
    known = client.get("/export/preview", params=FORM | {"raters": "rex"})
    assert unknown.status_code == known.status_code == 200
    assert unknown.text.replace("ghost", "rex") == known.text


def test_demonstrations_from_the_form_by_source_and_review(app, client) -> None:  # type: ignore[no-untyped-def]
    from tests.utils.writing_data import seed_demonstrations

    seed(app)
    with app.state.sessionmaker() as session:
        project = make_project(session, "writers")
        writer, editor, reviewer = (make_user(session, name) for name in ("wendy", "eddie", "rhea"))
        seeded = seed_demonstrations(session, project, writer=writer, editor=editor, reviewer=reviewer, n=4)
        session.commit()
    login(client, "rex")
    # the whole form, the comparison fields included, as a browser sends it
    form = FORM | {
        "project": "writers",
        "what": "demos",
        "demonstration_source": "written",
        "metadata": "true",
    }
    preview = client.get("/export/preview", params=form)
    assert preview.status_code == 200, preview.text
    assert f"Preview: {len(seeded.written)} rows" in preview.text and "<h2>Writing</h2>" in preview.text
    assert "wendy" not in preview.text and "Review status: accepted." in preview.text
    download = client.get("/export/download", params=form | {"archive": "0", "include_rejected": "true"})
    lines = [json.loads(line) for line in download.content.splitlines()]
    assert sorted(row["demonstration_id"] for row in lines) == sorted(seeded.written + seeded.rejected)
    assert {row["review_status"] for row in lines} == {"accepted", "rejected"}
    # and a comparisons export from the same form leaves the demonstration fields aside
    assert client.get("/export/preview", params=FORM | {"demonstration_source": "written"}).status_code == 200


def test_raters_cannot_export(app, client) -> None:  # type: ignore[no-untyped-def]
    seed(app)
    login(client, "rita")
    for url in ("/export", "/export/preview", "/export/download", "/account/tokens"):
        assert client.get(url, headers={"accept": "text/html"}).status_code == 403


def test_tokens_are_created_shown_once_and_revoked(app, client) -> None:  # type: ignore[no-untyped-def]
    seed(app)
    login(client, "rex")
    page = client.get("/account/tokens")
    token = csrf_from(page.text)
    assert client.post("/account/tokens", data={"name": "script"}).status_code == 403  # no CSRF token
    created = client.post("/account/tokens", data={"name": "script", "csrf_token": token})
    assert created.status_code == 200
    secret = re.search(r'class="secret">(rlhf_[^<]+)<', created.text).group(1)
    assert client.get("/api/v1/projects", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listing = client.get("/account/tokens").text
    assert secret not in listing and secret[:12] in listing  # shown once; the prefix stays
    token_id = re.search(r"/account/tokens/(\d+)/revoke", listing).group(1)
    revoked = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 200 and "revoked" in revoked.text
    assert client.get("/api/v1/projects", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
