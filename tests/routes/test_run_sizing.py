"""The launch form fits the worker: defaults for the fastest live worker's device, the run's
estimated duration on the project's data, warnings; the run page's phase and cautions."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.models import ModelKind, ModelVersion, Role, Run, RunLog, RunPhase, RunStatus
from app.models.types import utcnow
from app.services import workers
from tests.utils.factories import make_pair, make_project, make_user, make_vote
from tests.utils.web import csrf_from, login


def _setup(app, pairs: int = 3) -> int:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "proj")
        ann = make_user(session, "ann")
        for i in range(pairs):
            make_vote(session, make_pair(session, project, f"q{i}", "a", "b"), ann, "A")
        make_user(session, "ada", Role.admin)
        policy = ModelVersion(name="base-policy", kind=ModelKind.policy, uri="/models/base")
        session.add(policy)
        session.flush()
        return policy.id


def _add_worker(app, hostname: str, device: str, **speeds: dict) -> None:  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        worker = workers.report_worker(session, hostname=hostname, device=device,
                                       device_count=0 if device == "cpu" else 8,
                                       memory_bytes=141 * 2**30, cpu_count=16)  # fmt: skip
        worker.speeds = speeds


def _value(html: str, name: str) -> str:
    at = html.index(f'name="{name}"')
    start = html.index('value="', at) + len('value="')
    return html[start : html.index('"', start)]


def test_form_defaults_and_estimate_follow_the_worker(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app)
    login(client, "ada")
    # no live worker: CPU defaults and CPU priors
    page = client.get("/admin/runs/new?kind=generate&project=proj").text
    assert "no live worker (CPU assumed)" in page and "smaller than on a GPU" in page
    assert _value(page, "num_prompts") == "16" and _value(page, "max_new_tokens") == "64"
    assert "Estimated duration" in page and "rough prior for a small model on CPU" in page
    assert 'hx-get="/admin/runs/estimate"' in page

    _add_worker(app, "gpu-1", "cuda:NVIDIA H200", generate={"s_per_unit": 0.001, "overhead_s": 20.0,
                                                            "unit": "tokens", "runs": 3})  # fmt: skip
    page = client.get("/admin/runs/new?kind=generate&project=proj").text
    assert "cuda:NVIDIA H200 ×8, 141 GiB (gpu-1)" in page and "smaller than on a GPU" not in page
    assert _value(page, "num_prompts") == "64" and _value(page, "max_new_tokens") == "160"
    # 3 prompts x 2 completions x 160 tokens at 1 ms a token, after 20 s of loading
    assert "about 21 s" in page and "measured on gpu-1" in page and "960 tokens" in page

    # the fragment follows the form's values
    params = {"kind": "generate", "project": "proj", "num_prompts": "3"}
    fragment = client.get("/admin/runs/estimate", params=params | {"max_new_tokens": "100000"})
    assert fragment.status_code == 200 and 'id="estimate"' in fragment.text
    assert "max_new_tokens" in fragment.text  # out of range: the config's error, no estimate
    fragment = client.get("/admin/runs/estimate", params=params | {"max_new_tokens": "4000"})
    assert "about 44 s" in fragment.text


def test_form_warns_about_long_runs_and_small_data(app, client) -> None:  # type: ignore[no-untyped-def]
    policy_id = _setup(app, pairs=4)
    _add_worker(
        app, "laptop", "cpu", dpo={"s_per_unit": 200.0, "overhead_s": 60.0, "unit": "pairs", "runs": 1}
    )
    login(client, "ada")
    page = client.get("/admin/runs/new?kind=dpo&project=proj").text
    assert _value(page, "max_steps") == "25" and _value(page, "batch_size") == "4"  # CPU defaults
    assert "This run would take about" in page and "on cpu (measured on laptop)" in page
    assert "Only 4 pairs: below 50" in page and "No pair is held out" in page

    # launching anyway: the run's log keeps the estimate and the warnings
    token = csrf_from(page)
    form = {"kind": "dpo", "project": "proj", "base_model_id": str(policy_id), "max_steps": "1"}
    created = client.post("/admin/runs", data=form | {"csrf_token": token})
    assert created.status_code == 200 and "Run #1" in created.text
    with app.state.sessionmaker() as session:
        run = session.scalars(select(Run)).one()
        lines = [log.message for log in session.scalars(select(RunLog).where(RunLog.run_id == run.id))]
    assert any(line.startswith("estimate: about") for line in lines), lines
    assert any(line.startswith("warning: Only 4 pairs") for line in lines), lines


def test_run_page_shows_the_phase_and_cautions(app, client) -> None:  # type: ignore[no-untyped-def]
    _setup(app)
    login(client, "ada")
    with app.state.sessionmaker() as session, session.begin():
        project_id = session.scalars(select(ModelVersion)).first() and 1
        run = Run(project_id=project_id, kind="reward", status=RunStatus.running, phase=RunPhase.loading,
                  started_at=utcnow() - timedelta(minutes=1), config={"aggregation": "majority"})  # fmt: skip
        session.add(run)
        session.flush()
        run_id = run.id
    status = client.get(f"/admin/runs/{run_id}/status").text
    assert 'data-testid="run-phase">loading the model<' in status
    with app.state.sessionmaker() as session, session.begin():
        run = session.get(Run, run_id)
        run.phase, run.step, run.total_steps = RunPhase.training, 2, 5
    assert 'data-testid="run-phase">step 2 of 5<' in client.get(f"/admin/runs/{run_id}/status").text
    with app.state.sessionmaker() as session, session.begin():
        run = session.get(Run, run_id)
        run.status, run.summary = RunStatus.succeeded, {"eval/accuracy": 1.0, "eval/pairs": 1.0}
    page = client.get(f"/admin/runs/{run_id}").text
    assert "eval/accuracy 1 on 1 held-out pair: too few to mean anything (± 98%)." in page
