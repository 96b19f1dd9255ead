"""The label-quality pages: rendering (escaped, with charts), resolving disputes, pausing raters."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.models import Comparison, Judgment, JudgmentSource, Role, Run, RunKind, User
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import csrf_from, login

XSS_RATIONALE = "<script>window.__xss=1</script> I prefer **A**"
XSS_COMPLETION = '<img src=x onerror="window.__xss=2"> and <svg onload="window.__xss=3">'
XSS_PROMPT = "<iframe src=javascript:window.__xss=4></iframe> which is better?"
EVIL_NAME = "<b>mallory</b>"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _vote(session: Session, comparison: Comparison, rater: User, choice: str, **extra: object) -> None:
    values: dict[str, object] = {
        "comparison_id": comparison.id,
        "rater_id": rater.id,
        "project_id": comparison.project_id,
        "choice": choice,
        "strength": 0 if choice == "tie" else 1,
        "a_on_left": True,
        "source": JudgmentSource.ai if rater.role == Role.judge else JudgmentSource.human,
        "created_at": T0,
    }
    values.update(extra)
    session.add(Judgment(**values))
    comparison.judgment_count += 1


def _seed(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        rita, mal = make_user(session, "rita"), make_user(session, EVIL_NAME)
        make_user(session, "solo")
        judge = make_user(session, "lm-judge", Role.judge)
        project = make_project(session, "qa", overlap=2)
        make_project(session, "blank")
        split = make_pair(session, project, XSS_PROMPT, XSS_COMPLETION, "a plain answer")
        agreed = make_pair(session, project, "Say hi", "Hi!", "Hello.")
        gold = make_pair(session, project, "Capital of France?", "Paris", "Lyon", gold="A")
        run = Run(project_id=project.id, kind=RunKind.judge)
        session.add(run)
        session.flush()
        _vote(session, split, rita, "A", rationale=XSS_RATIONALE)
        _vote(session, split, mal, "B", rationale="B is **shorter**")
        _vote(session, split, judge, "A", run_id=run.id, rationale="<script>window.__xss=5</script>",
              provenance={"method": "lm", "model_version_id": None})  # fmt: skip
        _vote(session, agreed, rita, "A")
        _vote(session, agreed, mal, "A")
        _vote(session, agreed, judge, "B", run_id=run.id, provenance={"method": "lm"})
        _vote(session, gold, rita, "A")
        _vote(session, gold, mal, "B")
        return {
            "split": split.id,
            "agreed": agreed.id,
            "gold": gold.id,
            "rita": rita.id,
            "judge": judge.id,
        }


def _as_admin(client: TestClient) -> str:
    assert login(client, "ada").status_code == 303
    return csrf_from(client.get("/admin/projects/qa/disputes").text)


def _assert_escaped(page: str) -> None:
    html = page[page.index("<main") : page.index("</main>")]  # the layout's own scripts aside
    for tag in ("<script", "<iframe", "<img", "<b>mallory"):
        assert tag not in html, tag
    assert re.search(r"<svg(?![^>]*class=\"chart\")", html) is None  # only the charts' own SVG
    assert re.search(r"<[a-zA-Z][^>]*\son\w+=", html) is None  # no tag with an event handler


def test_pages_render_escaped_with_charts(app, client) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(app)
    _as_admin(client)

    quality = client.get("/admin/projects/qa/quality")
    assert quality.status_code == 200
    assert quality.text.count('<svg class="chart"') >= 4
    assert "pairwise agreement" in quality.text and "lm-judge" in quality.text
    assert "&lt;b&gt;mallory&lt;/b&gt;" in quality.text  # a username in the charts, escaped
    _assert_escaped(quality.text)
    judges = quality.text[quality.text.index('data-testid="judges"') :]
    # The judge agrees with 1 of 4 human votes on shared pairs; humans agree on 1 of 2 pairs.
    assert re.search(r"25\.0%\s*<small class=\"muted\">\(4 vote pairs\)", judges)
    assert re.search(r"50\.0%\s*<small class=\"muted\">\(2 vote pairs\)", judges)

    # The longer completion won 2 of the 6 human votes (rita on the split pair and on gold).
    assert re.search(r'data-testid="longer-wins">33\.3% of 6 decided', quality.text)

    raters = client.get("/admin/projects/qa/raters")
    assert raters.status_code == 200
    assert raters.text.count('<svg class="chart"') >= 4
    assert 'data-rater="rita"' in raters.text and 'data-rater="&lt;b&gt;mallory&lt;/b&gt;"' in raters.text
    assert 'data-rater="lm-judge"' not in raters.text  # an AI judge is not a rater
    assert f'action="/admin/raters/{ids["rita"]}/pause"' in raters.text
    _assert_escaped(raters.text)

    disputes = client.get("/admin/projects/qa/disputes")
    assert disputes.status_code == 200
    assert f'id="pair-{ids["split"]}"' in disputes.text
    assert (
        f'id="pair-{ids["agreed"]}"' not in disputes.text and f'id="pair-{ids["gold"]}"' not in disputes.text
    )
    # Every vote with its rationale, hostile markup shown as text, markdown rendered.
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in disputes.text
    assert "<strong>A</strong>" in disputes.text and "<strong>shorter</strong>" in disputes.text
    assert "&lt;img src=x onerror=" in disputes.text
    assert "&lt;script&gt;window.__xss=5&lt;/script&gt;" in disputes.text
    assert '<span class="badge">AI</span>' in disputes.text
    _assert_escaped(disputes.text)

    project_page = client.get("/admin/projects/qa")
    for path in ("quality", "raters", "disputes"):
        assert f'href="/admin/projects/qa/{path}"' in project_page.text


def test_empty_project_pages_explain_instead_of_failing(app, client) -> None:  # type: ignore[no-untyped-def]
    _seed(app)
    _as_admin(client)
    quality = client.get("/admin/projects/blank/quality")
    assert quality.status_code == 200 and "No judgments yet" in quality.text
    assert "nan" not in quality.text.lower().replace("nano", "")
    raters = client.get("/admin/projects/blank/raters")
    assert raters.status_code == 200 and "No judgments yet" in raters.text
    disputes = client.get("/admin/projects/blank/disputes")
    assert disputes.status_code == 200 and "No split pairs" in disputes.text
    assert client.get("/admin/projects/nope/quality").status_code == 404
    assert client.get("/admin/projects/qa/disputes?status=bogus").status_code == 422


def _comparison(app, comparison_id: int) -> Comparison:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session:
        comparison = session.get(Comparison, comparison_id)
        session.expunge(comparison)
        return comparison


def test_resolve_flow_needs_an_admin_and_a_csrf_token(app, client) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(app)
    url = f"/admin/projects/qa/disputes/{ids['split']}"
    form = {
        "action": "resolve",
        "choice": "B",
        "note": "B answers the question",
        "status": "all",
        "page": "1",
    }

    # A rater may not resolve, even with a valid token.
    with TestClient(app) as rater_client:
        login(rater_client, "rita")
        token = csrf_from(rater_client.get("/account/password").text)
        refused = rater_client.post(url, data=form | {"csrf_token": token}, follow_redirects=False)
        assert refused.status_code == 403
    assert _comparison(app, ids["split"]).resolved_choice is None

    token = _as_admin(client)
    assert client.post(url, data=form, follow_redirects=False).status_code == 403  # no token
    assert client.post(url, data=form | {"csrf_token": "forged"}, follow_redirects=False).status_code == 403
    assert _comparison(app, ids["split"]).resolved_choice is None

    done = client.post(url, data=form | {"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].startswith("/admin/projects/qa/disputes?status=all&scope=split&page=1")
    comparison = _comparison(app, ids["split"])
    assert comparison.resolved_choice == "B" and comparison.resolution_note == "B answers the question"
    assert comparison.resolved_at is not None
    with app.state.sessionmaker() as session:
        admin_id = session.query(User.id).filter(User.username == "ada").scalar()
    assert comparison.resolved_by_id == admin_id

    unresolved = client.get("/admin/projects/qa/disputes")
    assert f'id="pair-{ids["split"]}"' not in unresolved.text
    resolved = client.get("/admin/projects/qa/disputes?status=resolved")
    assert (
        f'id="pair-{ids["split"]}"' in resolved.text
        and "Resolved as <strong>B</strong> by ada" in resolved.text
    )

    cleared = client.post(url, data={"action": "clear", "csrf_token": token}, follow_redirects=False)
    assert cleared.status_code == 303
    comparison = _comparison(app, ids["split"])
    assert comparison.resolved_choice is None and comparison.resolved_by_id is None
    assert comparison.resolved_at is None and comparison.resolution_note == ""

    gold = client.post(f"/admin/projects/qa/disputes/{ids['gold']}", data=form | {"csrf_token": token})
    assert gold.status_code == 422
    bad_choice = client.post(url, data=form | {"choice": "C", "csrf_token": token})
    assert bad_choice.status_code == 422
    elsewhere = client.post(
        f"/admin/projects/blank/disputes/{ids['split']}", data=form | {"csrf_token": token}
    )
    assert elsewhere.status_code == 404
    assert _comparison(app, ids["split"]).resolved_choice is None


def _paused(app, user_id: int) -> bool:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session:
        return bool(session.get(User, user_id).is_paused)


def test_pause_and_resume_a_rater(app, client) -> None:  # type: ignore[no-untyped-def]
    ids = _seed(app)
    rita = ids["rita"]
    with TestClient(app) as rater_client:
        login(rater_client, "solo")
        token = csrf_from(rater_client.get("/account/password").text)
        assert rater_client.post(f"/admin/raters/{rita}/pause", data={"csrf_token": token}).status_code == 403
    assert not _paused(app, rita)

    token = _as_admin(client)
    assert client.post(f"/admin/raters/{rita}/pause", follow_redirects=False).status_code == 403
    assert not _paused(app, rita)

    back = "/admin/projects/qa/raters"
    paused = client.post(f"/admin/raters/{rita}/pause", data={"csrf_token": token, "next": back},
                         follow_redirects=False)  # fmt: skip
    assert paused.status_code == 303 and paused.headers["location"] == back
    assert _paused(app, rita)
    page = client.get(back)
    assert "paused" in page.text and f'action="/admin/raters/{rita}/resume"' in page.text

    resumed = client.post(f"/admin/raters/{rita}/resume", data={"csrf_token": token, "next": "https://evil.example/"},
                          follow_redirects=False)  # fmt: skip
    assert resumed.status_code == 303 and resumed.headers["location"] == "/admin/users"
    assert not _paused(app, rita)

    assert client.post(f"/admin/raters/{ids['judge']}/pause", data={"csrf_token": token}).status_code == 422
    assert client.post("/admin/raters/999999/pause", data={"csrf_token": token}).status_code == 404
