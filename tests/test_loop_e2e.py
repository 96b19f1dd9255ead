"""The whole loop through the real parts: the web app under uvicorn, simulated raters over HTTP,
PostgreSQL, a Celery worker on Redis, and real (tiny) models.

labels -> reward model -> DPO -> the new policy's pairs in the rating queue. Also: a task
delivered twice trains once, and a worker killed mid-run leaves a failed run and no model.
"""

from __future__ import annotations

import os
import random
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.db import make_engine, make_sessionmaker, session_scope
from app.models import (
    Comparison,
    Completion,
    Judgment,
    ModelKind,
    ModelVersion,
    Project,
    Run,
    RunKind,
    RunStatus,
    User,
)
from app.queue import make_celery, send_run
from app.services import runs
from app.services.rating import claim_next
from tests.conftest import REQUIRE_SERVICES
from tests.utils.factories import make_pair, make_project
from tests.utils.processes import celery_worker, service_env, wait_until, web_server

if not REQUIRE_SERVICES:
    pytest.importorskip("torch", reason="the training stack is not installed")

WORDS = "the cat dog sun moon red blue big small happy sad apple pear plum tree sky sea".split()


@pytest.fixture
def redis_broker(redis_url: str) -> str:
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    client.flushdb()
    client.close()
    return redis_url


@pytest.fixture
def stack(pg_url: str, redis_broker: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    env = service_env(
        DATABASE_URL=pg_url,
        BROKER_URL=redis_broker,
        ARTIFACTS_DIR=str(tmp_path / "artifacts"),
        DATA_DIR=str(tmp_path / "data"),
    )
    settings = Settings(database_url=pg_url, broker_url=redis_broker, environment="test",
                        secret_key=env["SECRET_KEY"])  # fmt: skip
    engine = make_engine(pg_url, pool_size=2)
    yield env, settings, make_sessionmaker(engine), make_celery(settings)
    engine.dispose()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _seed(factory, tmp_path: Path) -> int:  # type: ignore[no-untyped-def]
    from tests.utils.tiny_models import make_tiny_causal_lm

    model_dir = make_tiny_causal_lm(tmp_path / "tiny-base", seed=1)
    rng = random.Random(0)
    with session_scope(factory) as session:
        project = make_project(session, "loop", overlap=1)
        for i in range(48):
            plain = _sentence(rng, 6)
            with_word = _sentence(rng, 3) + " banana " + _sentence(rng, 2)
            a, b = (plain, with_word) if i % 2 else (with_word, plain)
            make_pair(session, project, f"tell me about the {rng.choice(WORDS)} {i}", a, b)
        base = ModelVersion(name="tiny-base", kind=ModelKind.policy, uri=str(model_dir))
        session.add(base)
        session.flush()
        return base.id


def _wait_for(factory, run_id: int, timeout: float = 240) -> Run:  # type: ignore[no-untyped-def]
    def finished() -> Run | None:
        with factory() as session:
            run = session.get(Run, run_id)
            return run if run is not None and run.status.finished else None

    return wait_until(finished, timeout, f"run {run_id} to end")


def _launch(factory, celery, **fields) -> int:  # type: ignore[no-untyped-def]
    with session_scope(factory) as session:
        project = session.scalars(select(Project).where(Project.slug == "loop")).one()
        run = runs.create_run(session, project=project, **fields)
        run_id = run.id
    assert send_run(run_id, celery=celery)
    return run_id


def test_labels_to_new_policy_pairs_through_celery(stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, _settings, factory, celery = stack
    base_id = _seed(factory, tmp_path)

    # 1. simulated raters label every pair through the HTTP routes people use
    from app.simulate import SimulationConfig, simulate

    with web_server(env, tmp_path / "web.log") as base_url:
        result = simulate(
            SimulationConfig(project="loop", raters=3, oracle="app.oracles:prefers_word", base_url=base_url),
            database_url=env["DATABASE_URL"],
        )
    assert sum(r.judgments for r in result.raters) == 48
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Judgment)) == 48

    with celery_worker(env, tmp_path / "worker.log"):
        # 2. a reward model; the task is delivered twice and trains once
        reward_run = _launch(factory, celery, kind=RunKind.reward, base_model_id=base_id,
                             config={"epochs": 3, "learning_rate": 1e-3, "batch_size": 8,
                                     "max_length": 64, "eval_fraction": 0.25})  # fmt: skip
        assert send_run(reward_run, celery=celery)
        run = _wait_for(factory, reward_run)
        assert run.status == RunStatus.succeeded, run.error
        with factory() as session:
            assert session.scalar(select(func.count()).select_from(ModelVersion).where(
                ModelVersion.run_id == reward_run)) == 1  # fmt: skip
            assert "eval/accuracy" in run.summary

        # 3. DPO from the base policy
        dpo_run = _launch(factory, celery, kind=RunKind.dpo, base_model_id=base_id,
                          config={"epochs": 2, "learning_rate": 5e-3, "batch_size": 8,
                                  "max_length": 64, "beta": 0.1})  # fmt: skip
        run = _wait_for(factory, dpo_run)
        assert run.status == RunStatus.succeeded, run.error
        new_policy_id = run.output_model_id
        with factory() as session:
            new_policy = session.get(ModelVersion, new_policy_id)
            assert new_policy.parent_id == base_id and Path(new_policy.uri).exists()

        # 4. the new policy's completions come back to the raters
        generate_config = {"num_prompts": 8, "max_new_tokens": 8, "temperature": 1.0}
        generate_run = _launch(
            factory, celery, kind=RunKind.generate, base_model_id=new_policy_id, config=generate_config
        )
        run = _wait_for(factory, generate_run)
        assert run.status == RunStatus.succeeded, run.error
        assert run.summary["comparisons_created"] > 0

    with session_scope(factory) as session:
        fresh = session.execute(
            select(Comparison.id, Completion.model_version_id, Completion.sampling)
            .join(Completion, Completion.id == Comparison.completion_a_id)
            .where(Completion.model_version_id.is_not(None))
        ).all()
        assert len(fresh) == run.summary["comparisons_created"]
        assert {mv for _, mv, _ in fresh} == {new_policy_id}
        assert all(sampling["temperature"] == 1.0 for _, _, sampling in fresh)
        rater = session.scalars(select(User).where(User.username.like("sim-loop-%"))).first()
        project = session.scalars(select(Project).where(Project.slug == "loop")).one()
        assignment = claim_next(session, project=project, rater_id=rater.id)
        assert assignment is not None and assignment.comparison_id in {cid for cid, _, _ in fresh}


def test_killed_worker_leaves_a_failed_run_and_no_model(stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, _settings, factory, celery = stack
    base_id = _seed(factory, tmp_path)
    with session_scope(factory) as session:
        from app.models import Demonstration, Prompt
        from app.services.content import text_hash

        for prompt_id in session.scalars(select(Prompt.id)):
            session.add(Demonstration(project_id=session.get(Prompt, prompt_id).project_id,
                                      prompt_id=prompt_id, response="banana banana",
                                      content_hash=text_hash("banana banana")))  # fmt: skip
    with celery_worker(env, tmp_path / "worker.log") as worker:
        run_id = _launch(factory, celery, kind=RunKind.sft, base_model_id=base_id,
                         config={"max_steps": 100000, "batch_size": 2, "max_length": 64})  # fmt: skip

        def training() -> bool:
            with factory() as session:
                run = session.get(Run, run_id)
                return run.status == RunStatus.running and run.step > 0

        wait_until(training, 120, "the run to start training")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)

    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        assert run.status == RunStatus.running  # the worker died without a word
        assert runs.reap_stale(session, stale_after=timedelta(seconds=0)) == [run_id]
    with factory() as session:
        run = session.get(Run, run_id)
        assert run.status == RunStatus.failed and "stopped reporting" in run.error
        assert session.scalar(select(func.count()).select_from(ModelVersion).where(
            ModelVersion.run_id == run_id)) == 0  # fmt: skip
    leftovers = list((tmp_path / "artifacts").glob("models/*"))
    assert leftovers == [], f"no model may be published by a killed run: {leftovers}"
