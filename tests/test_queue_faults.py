"""The task queue fails: raters and admins carry on, nothing is lost, no run hangs.

* Redis down: judgments are still taken, a launched run is stored and its page says it waits for
  the task queue; when Redis is back, the beat task `dispatch_pending` sends it and a real worker
  runs it to success. The broker is a `redis-server` of this test alone, killed and started
  again on the same port.
* A worker killed mid-run (SIGKILL, no chance to clean up): beat's reaper fails the run with a
  reason naming the lost worker once its heartbeat is older than STALE_RUN_S; no model version
  is registered, nothing is published, and a second delivery of the task does not train it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db import make_engine, make_sessionmaker, session_scope
from app.models import (
    Demonstration,
    Judgment,
    ModelKind,
    ModelVersion,
    Project,
    Prompt,
    Role,
    Run,
    RunKind,
    RunStatus,
)
from app.queue import make_celery, send_run
from app.services import runs
from app.services.content import text_hash
from tests.conftest import REQUIRE_SERVICES, make_settings, private_redis_or_skip
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.processes import ROOT, celery_worker, service_env, wait_until
from tests.utils.services import PrivateRedis
from tests.utils.web import assignment_id, csrf_from, htmx_post, login

pytestmark = pytest.mark.postgres

if not REQUIRE_SERVICES:
    pytest.importorskip("torch", reason="the training stack is not installed")


@pytest.fixture
def broker() -> Iterator[PrivateRedis]:
    """A `redis-server` of this test alone, since the test kills it and starts it again."""
    server = private_redis_or_skip()
    yield server
    server.remove()


@pytest.fixture
def stack(pg_url: str, broker: PrivateRedis, tmp_path: Path) -> Iterator[dict[str, Any]]:
    from tests.utils.tiny_models import make_tiny_causal_lm

    env = service_env(
        DATABASE_URL=pg_url,
        BROKER_URL=broker.url(),
        ARTIFACTS_DIR=str(tmp_path / "artifacts"),
        DATA_DIR=str(tmp_path / "data"),
    )
    engine = make_engine(pg_url, pool_size=2)
    factory = make_sessionmaker(engine)
    model_dir = make_tiny_causal_lm(tmp_path / "tiny-base", seed=1)
    with session_scope(factory) as session:
        project = make_project(session, "queue", overlap=1)
        for i in range(6):
            make_pair(session, project, f"tell me about the cat {i}", f"the cat is big {i}", f"the dog {i}")
        for prompt_id in session.scalars(select(Prompt.id)):
            session.add(Demonstration(project_id=project.id, prompt_id=prompt_id, response="the cat is happy",
                                      content_hash=text_hash("the cat is happy")))  # fmt: skip
        make_user(session, "ada", Role.admin)
        make_user(session, "rita", Role.rater)
        base = ModelVersion(name="tiny-base", kind=ModelKind.policy, uri=str(model_dir))
        session.add(base)
        session.flush()
        base_id = base.id
    yield {"env": env, "factory": factory, "base_id": base_id, "artifacts": tmp_path / "artifacts"}
    engine.dispose()


def _beat_task(env: dict[str, str], task: str) -> str:
    """Run one of beat's tasks the way beat's worker does (the task body, configured by env)."""
    code = f"from worker.tasks import {task}; print({task}())"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def _run(factory: Any, run_id: int) -> Run:
    with factory() as session:
        run = session.get(Run, run_id)
        assert run is not None
        session.expunge(run)
        return run


def test_with_redis_down_raters_work_and_runs_wait_for_the_queue(
    stack: dict[str, Any], broker, tmp_path: Path
):  # type: ignore[no-untyped-def]
    env, factory = stack["env"], stack["factory"]
    from app.web.app import create_app

    app = create_app(make_settings(env["DATABASE_URL"], broker_url=broker.url()))
    try:
        with celery_worker(env, tmp_path / "worker.log"), TestClient(app) as rater, TestClient(app) as admin:
            login(rater, "rita")
            page = rater.get("/rate/queue")
            token, pair = csrf_from(page.text), assignment_id(page.text)
            login(admin, "ada")
            admin_token = csrf_from(admin.get("/admin/runs/new?kind=generate&project=queue").text)

            broker.kill()

            # Raters go on: each judgment is stored and the next pair comes back.
            for _ in range(3):
                answer = htmx_post(
                    rater, "/rate/queue/judgments", token, {"assignment_id": pair, "pick": "1"}
                )
                assert answer.status_code == 200 and "already saved" not in answer.text
                pair = assignment_id(answer.text)
            with factory() as session:
                assert session.scalar(select(func.count()).select_from(Judgment)) == 3

            # A run launched now is stored, and its page says what it waits for.
            launched = admin.post(
                "/admin/runs",
                data={"kind": "generate", "project": "queue", "base_model_id": stack["base_id"],
                      "num_prompts": "2", "max_new_tokens": "4", "csrf_token": admin_token},
                follow_redirects=False,
            )  # fmt: skip
            assert launched.status_code == 303
            run_id = int(launched.headers["location"].rsplit("/", 1)[1])
            shown = admin.get(launched.headers["location"])
            assert shown.status_code == 200
            assert 'data-testid="run-status">queued' in shown.text
            assert "waiting for the task queue" in shown.text
            run = _run(factory, run_id)
            assert run.status == RunStatus.queued and run.celery_task_id is None
            # Beat's dispatcher, while the broker is still down, sends nothing and loses nothing.
            assert _beat_task(env, "dispatch_pending") == "1"
            assert _run(factory, run_id).celery_task_id is None

            broker.start()  # same port: the worker reconnects by itself
            assert _beat_task(env, "dispatch_pending") == "1"
            assert _run(factory, run_id).celery_task_id is not None
            assert "waiting for the task queue" not in admin.get(f"/admin/runs/{run_id}").text

            def finished() -> Run | None:
                current = _run(factory, run_id)
                return current if current.status.finished else None

            run = wait_until(finished, 240, f"run {run_id} to finish")
            assert run.status == RunStatus.succeeded, run.error
            assert run.summary["comparisons_created"] + run.summary["pairs_skipped"] == 2
            assert _beat_task(env, "dispatch_pending") == "0"  # nothing sent twice
    finally:
        app.state.engine.dispose()


def test_a_killed_worker_leaves_a_failed_run_and_nothing_published(stack: dict[str, Any], tmp_path: Path):  # type: ignore[no-untyped-def]
    env, factory, artifacts = stack["env"], stack["factory"], stack["artifacts"]
    celery = make_celery(make_settings(env["DATABASE_URL"], broker_url=env["BROKER_URL"]))
    with celery_worker(env, tmp_path / "worker.log") as worker:
        with session_scope(factory) as session:
            project = session.scalars(select(Project).where(Project.slug == "queue")).one()
            config = {"max_steps": 100000, "batch_size": 2, "max_length": 32}
            run = runs.create_run(
                session, project=project, kind=RunKind.sft, base_model_id=stack["base_id"], config=config
            )
            run_id = run.id
        assert send_run(run_id, celery=celery)

        def training() -> bool:
            run = _run(factory, run_id)
            return run.status == RunStatus.running and run.step > 0

        wait_until(training, 180, "the run to start training")
        os.killpg(worker.pid, signal.SIGKILL)  # the worker's own process group
        worker.wait(timeout=30)

    run = _run(factory, run_id)
    assert run.status == RunStatus.running and run.worker  # nobody has noticed yet
    lost_worker = run.worker
    # The reaper leaves a run alone while its heartbeat is fresh ...
    assert _beat_task(env | {"STALE_RUN_S": "3600"}, "reap_stale_runs") == "[]"
    assert _run(factory, run_id).status == RunStatus.running
    # ... and fails it once the heartbeat is older than STALE_RUN_S.
    time.sleep(1.5)
    assert _beat_task(env | {"STALE_RUN_S": "1"}, "reap_stale_runs") == f"[{run_id}]"
    run = _run(factory, run_id)
    assert run.status == RunStatus.failed and run.finished_at is not None
    assert lost_worker in run.error and "stopped reporting" in run.error

    with factory() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(ModelVersion).where(ModelVersion.run_id == run_id)
            )
            == 0
        )
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 1  # the base alone
    published = list((artifacts / "models").glob("*")) if (artifacts / "models").exists() else []
    assert published == [], f"a killed run published {published}"
    # What the killed process left is its private work directory, named as such, never a model.
    leftovers = [p for p in artifacts.rglob("*") if p.is_dir() and p.parent == artifacts]
    assert {p.name for p in leftovers} <= {".work"}, leftovers
    for work in (artifacts / ".work").glob("*"):
        assert work.name.startswith(f"run-{run_id}-"), work

    # The task was never acknowledged; if the broker delivers it again, the run stays failed.
    from worker.runner import execute_run

    settings = make_settings(env["DATABASE_URL"], artifacts_dir=artifacts)
    assert execute_run(run_id, settings=settings, factory=factory) == "skipped"
    assert _run(factory, run_id).status == RunStatus.failed
