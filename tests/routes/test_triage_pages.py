"""AI triage in the admin pages: the project page chooses the judge, margin and audit share (admin
only, CSRF, clear errors that change nothing), and the label-quality page shows what triage did:
the judge's accuracy on the audited pairs with its interval, and the human labels it saved."""

from __future__ import annotations

from sqlalchemy import select

from app.models import (
    AuditEvent,
    Comparison,
    Judgment,
    JudgmentSource,
    Project,
    Role,
    RunItem,
    RunKind,
    TriageState,
)
from app.services.runs import create_run
from app.services.runs.judges import judge_identity
from app.services.triage import update_triage_settings, wilson_interval
from app.services.triage.store import store_triage
from tests.utils.factories import make_model_version, make_pair, make_project, make_user
from tests.utils.web import csrf_from, login

EVIL = "<script>window.__xss=1</script>judge"


def _project(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "boss", Role.admin)
        make_user(session, "rita", Role.rater)
        project = make_project(session, "tri", overlap=2)
        other = make_project(session, "other")
        judge = make_model_version(session, EVIL, kind="reward", project=project)
        foreign = make_model_version(session, "theirs", project=other)
        return {"project": project.id, "judge": judge.id, "foreign": foreign.id}


def _settings(app) -> tuple[int | None, float, float]:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session:
        project = session.scalars(select(Project).where(Project.slug == "tri")).one()
        return project.triage_model_id, project.triage_margin, project.triage_audit_share


def test_the_project_page_sets_triage_for_admins_only(app, client) -> None:  # type: ignore[no-untyped-def]
    ids = _project(app)
    login(client, "boss")
    page = client.get("/admin/projects/tri").text
    assert 'data-testid="triage-form"' in page and "&lt;script&gt;" in page and "<script>window" not in page
    token = csrf_from(page)
    url = "/admin/projects/tri/triage"
    form = {"triage_model_id": str(ids["judge"]), "triage_margin": "1.5", "audit_percent": "20"}
    assert client.post(url, data=form, follow_redirects=False).status_code == 403  # no CSRF token
    assert _settings(app) == (None, 2.0, 0.1)
    done = client.post(url, data=form | {"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith("#triage")
    assert _settings(app) == (ids["judge"], 1.5, 0.2)
    with app.state.sessionmaker() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "project.triage")).one()
        assert event.details["judge_model_id"] == ids["judge"] and event.actor_name == "boss"
    # bad input: a clear error naming the field, and nothing changes
    for bad, field in (
        ({"triage_margin": "abc"}, "triage_margin"),
        ({"triage_margin": "-1"}, "triage_margin"),
        ({"audit_percent": "150"}, "triage_audit_share"),
        ({"triage_model_id": str(ids["foreign"])}, "triage_model_id"),
        ({"triage_model_id": "x1"}, "triage_model_id"),
        ({"triage_model_id": "99999999999"}, "triage_model_id"),
    ):
        answer = client.post(url, data=form | bad | {"csrf_token": token})
        assert answer.status_code == 422 and field in answer.text, (bad, answer.status_code)
        assert _settings(app) == (ids["judge"], 1.5, 0.2)
    # off again
    client.post(url, data=form | {"triage_model_id": "", "csrf_token": token})
    assert _settings(app) == (None, 1.5, 0.2)
    # a rater may not
    client.post("/logout", data={"csrf_token": token})
    login(client, "rita")
    rater = client.post(url, data=form | {"csrf_token": csrf_from(client.get("/rate").text)})
    assert rater.status_code in (403, 404)
    assert _settings(app) == (None, 1.5, 0.2)


def test_the_quality_page_shows_the_judges_audited_accuracy_and_the_labels_saved(app, client) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "boss", Role.admin)
        raters = [make_user(session, f"r{i}") for i in range(2)]
        project = make_project(session, "tri", overlap=2)
        pairs = [make_pair(session, project, f"q{i}", f"good {i}", f"bad {i}") for i in range(12)]
        judge = make_model_version(session, EVIL, kind="reward", project=project)
        update_triage_settings(session, project=project, model_id=judge.id, margin=1.0, audit_share=0.5)
        run = create_run(session, project=project, kind=RunKind.triage, config={})
        frozen = set(session.scalars(select(RunItem.item_id).where(RunItem.run_id == run.id)))
        assert frozen == {p.id for p in pairs}
        # sure of A (score gap 3) on ten pairs, unsure (gap 0.5) on two
        verdicts = [
            {"comparison_id": p.id, "choice": "A", "strength": 1, "rationale": "",
             "provenance": {"scores": [3.0 if i < 10 else 0.5, 0.0]}}
            for i, p in enumerate(pairs)
        ]  # fmt: skip
        identity = judge_identity(session, project=project, model_id=judge.id, rubric_override=None)
        store_triage(session, run=run, context={"judge": identity.__dict__}, outcome={"verdicts": verdicts})
        session.flush()
        audited = list(session.scalars(select(Comparison).where(Comparison.triage == TriageState.audit)))
        assert len(audited) == 5
        # raters agree with the judge on four audited pairs and prefer B on the fifth
        for index, pair in enumerate(audited):
            for rater in raters:
                session.add(Judgment(comparison_id=pair.id, rater_id=rater.id, project_id=project.id,
                                     choice="A" if index else "B", strength=1, a_on_left=True,
                                     source=JudgmentSource.human))  # fmt: skip
            pair.judgment_count = 2
    login(client, "boss")
    page = client.get("/admin/projects/tri/quality").text
    assert 'data-testid="triage"' in page
    assert 'data-testid="triage-saved">10<' in page  # five pairs to the judge, overlap 2
    low, high = wilson_interval(4, 5)
    assert "80.0% (4 of 5; 95% interval" in page
    assert f"{low * 100:.1f}%–{high * 100:.1f}%" in page
    assert "<script>window" not in page and "&lt;script&gt;" in page
