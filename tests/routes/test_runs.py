"""The training dashboard: launch forms, validation, live status, cancel, registry, schedules."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.models import ModelKind, ModelVersion, Role, Run, RunStatus, Schedule
from app.services import runs
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.web import csrf_from, login


def _setup(app):  # type: ignore[no-untyped-def]
    with app.state.sessionmaker() as session, session.begin():
        project = make_project(session, "proj")
        make_pair(session, project, "q", "a", "b")
        make_user(session, "ada", Role.admin)
        policy = ModelVersion(name="base-policy", kind=ModelKind.policy, uri="/models/base")
        reward = ModelVersion(name="rm", kind=ModelKind.reward, uri="/models/rm")
        session.add_all([policy, reward])
        session.flush()
        return policy.id, reward.id


def test_launch_watch_and_cancel(app, client) -> None:  # type: ignore[no-untyped-def]
    policy_id, reward_id = _setup(app)
    login(client, "ada")
    assert "No runs yet" in client.get("/admin/runs").text
    form = client.get("/admin/runs/new?kind=ppo&project=proj")
    assert form.status_code == 200
    for field in ("kl_coef", "cliprange", "missing_eos_penalty", "Reward model", "rm"):
        assert field in form.text
    token = csrf_from(form.text)

    bad = client.post("/admin/runs", data={"kind": "ppo", "project": "proj", "base_model_id": policy_id,
                                           "reward_model_id": reward_id, "batch_size": "8",
                                           "mini_batch_size": "3", "csrf_token": token})  # fmt: skip
    assert bad.status_code == 422 and "mini_batch_size" in bad.text
    dpo_from_reward = {"kind": "dpo", "project": "proj", "base_model_id": reward_id, "csrf_token": token}
    wrong_kind = client.post("/admin/runs", data=dpo_from_reward)
    assert wrong_kind.status_code == 422 and "is a reward model" in wrong_kind.text

    launched = client.post(
        "/admin/runs",
        data={"kind": "generate", "project": "proj", "base_model_id": policy_id,
              "num_prompts": "4", "temperature": "0.5", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert launched.status_code == 303
    page = client.get(launched.headers["location"])
    assert page.status_code == 200 and 'data-testid="run-status">queued' in page.text
    assert "waiting for the task queue" in page.text  # the broker is down: nothing is lost
    assert 'hx-trigger="every 2s"' in page.text
    with app.state.sessionmaker() as session:
        run = session.scalars(select(Run)).one()
        assert run.config["temperature"] == 0.5 and run.config["num_prompts"] == 4
        run_id = run.id

    with app.state.sessionmaker() as session, session.begin():
        run = session.get(Run, run_id)
        runs.claim(session, run_id=run_id, worker="w")
        runs.record_progress(session, run_id=run_id, step=3, total=10, metrics={"loss/train": 0.5})
    status = client.get(f"/admin/runs/{run_id}/status", headers={"HX-Request": "true"})
    assert "running" in status.text and 'value="30"' in status.text
    metrics = client.get(f"/admin/runs/{run_id}/metrics").json()
    assert metrics["series"]["loss/train"] == [[3, 0.5]] and metrics["finished"] is False
    assert client.get(f"/admin/runs/{run_id}/metrics?after={metrics['last']}").json()["series"] == {}

    cancelled = client.post(f"/admin/runs/{run_id}/cancel", data={"csrf_token": token},
                            headers={"HX-Request": "true"})  # fmt: skip
    assert "stopping at the next step" in cancelled.text
    with app.state.sessionmaker() as session, session.begin():
        runs.cancel(session, run=session.get(Run, run_id))
    final = client.get(f"/admin/runs/{run_id}/status", headers={"HX-Request": "true"})
    assert "cancelled" in final.text and "hx-trigger" not in final.text  # polling stops
    retried = client.post(f"/admin/runs/{run_id}/retry", data={"csrf_token": token}, follow_redirects=False)
    assert retried.status_code == 303
    with app.state.sessionmaker() as session:
        assert session.scalar(select(Run).where(Run.id != run_id)).status == RunStatus.queued


def test_registry_and_schedule_pages(app, client) -> None:  # type: ignore[no-untyped-def]
    policy_id, _ = _setup(app)
    login(client, "ada")
    page = client.get("/admin/models")
    assert "base-policy" in page.text and "rm" in page.text
    token = csrf_from(page.text)
    client.post(f"/admin/models/{policy_id}/promote", data={"csrf_token": token})
    assert "current" in client.get("/admin/models").text
    saved = client.post(
        "/admin/schedules",
        data={"project": "proj", "min_new_judgments": "50", "method": "dpo",
              "base_model_id": policy_id, "enabled": "true", "csrf_token": token},
        follow_redirects=False,
    )  # fmt: skip
    assert saved.status_code == 303
    with app.state.sessionmaker() as session:
        schedule = session.scalars(select(Schedule)).one()
        assert schedule.min_new_judgments == 50 and schedule.config["base_model_id"] == policy_id
    assert "0 new judgments since the last trigger" in client.get("/admin/schedules").text
    assert schedule.config["judge_model_id"] is None

    # An AI judge in the loop: any registered version; an unknown one is refused.
    judged = {"project": "proj", "min_new_judgments": "50", "method": "dpo", "base_model_id": policy_id,
              "enabled": "true", "csrf_token": token}  # fmt: skip
    refused = client.post("/admin/schedules", data=judged | {"judge_model_id": "999"})
    assert refused.status_code == 422 and "judge_model_id" in refused.text
    client.post("/admin/schedules", data=judged | {"judge_model_id": str(policy_id)})
    with app.state.sessionmaker() as session:
        assert session.scalars(select(Schedule)).one().config["judge_model_id"] == policy_id
    page = client.get("/admin/schedules").text
    assert "new judgments and pairs since the last trigger" in page and "AI judge (optional)" in page


def test_the_registry_page_shows_the_disk_each_version_takes(app, client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.models.types import utcnow

    stored = tmp_path / "sft"
    stored.mkdir()
    (stored / "model.safetensors").write_bytes(b"w" * 2_500_000)
    (stored / "config.json").write_bytes(b"{}" * 250)
    with app.state.sessionmaker() as session, session.begin():
        make_user(session, "ada", Role.admin)
        session.add_all([
            ModelVersion(name="on-disk", kind=ModelKind.policy, uri=str(stored)),
            ModelVersion(name="from-the-hub", kind=ModelKind.policy, uri="org/some-model"),
            ModelVersion(name="gone", kind=ModelKind.policy, uri=str(tmp_path / "gone"), pruned_at=utcnow()),
        ])  # fmt: skip
    login(client, "ada")
    page = client.get("/admin/models").text
    assert "2.5 MB" in page  # 2,500,500 bytes, in the row and in the total
    assert "Files on disk: <strong>2.5 MB</strong> for 3 version(s)" in page
    assert "unknown" in page and "pruned " in page and "rlhf models prune" in page


def test_model_selects_offer_the_declared_kind(app, client) -> None:  # type: ignore[no-untyped-def]
    """The generate form's `versus_model_id` lists policies only (app/run_kinds.py declares it a
    policy); a judge may be either kind, so its list has both."""
    _setup(app)
    login(client, "ada")

    def options(kind: str, field: str) -> list[str]:
        page = client.get(f"/admin/runs/new?kind={kind}&project=proj")
        assert page.status_code == 200
        select_html = re.search(rf'<select name="{field}">(.*?)</select>', page.text, re.S)
        assert select_html, field
        return re.findall(r"<option [^>]*>([^<]*)</option>", select_html.group(1))

    assert options("generate", "versus_model_id") == ["(none)", "base-policy (policy)"]
    assert options("judge", "judge_model_id") == ["(none)", "base-policy (policy)", "rm (reward)"]
