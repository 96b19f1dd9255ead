"""A run through the runner reports its phases in order, writes its worker's row (device, memory)
and the speed it measured; a tiny held-out set is called out beside its accuracy."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import ModelKind, ModelVersion, Run, RunKind, RunPhase, RunStatus, Worker
from app.services import runs, workers
from app.services.runs import sizing
from tests.conftest import make_settings
from tests.utils.factories import make_comparison, make_human_judgment, make_project, make_user
from tests.utils.tiny_models import make_tiny_causal_lm
from tests.worker.conftest import make_prompts
from worker import hardware
from worker.runner import execute_run


def test_a_run_reports_its_phases_its_worker_and_its_speed(
    pg_factory: sessionmaker[Session], pg_url: str, tmp_path: Path
) -> None:
    base = make_tiny_causal_lm(tmp_path / "base", seed=0)
    with session_scope(pg_factory) as session:
        project = make_project(session, "tiny")
        rater = make_user(session, "ann")
        for messages in make_prompts(6, seed=3):
            comparison = make_comparison(session, project, messages, "the cat is happy", "no")
            make_human_judgment(session, comparison, rater, "A")
        model = ModelVersion(name="tiny-base", kind=ModelKind.policy, uri=str(base))
        session.add(model)
        session.flush()
        config = {"max_steps": 3, "batch_size": 2, "max_length": 64, "eval_fraction": 0.3}
        run_id = runs.create_run(session, project=project, kind=RunKind.reward, base_model_id=model.id,
                                 config=config).id  # fmt: skip
        assert (
            sizing.data_size(session, RunKind.reward, project, runs.resolve_config(RunKind.reward, config))
            == 6
        )

    phases: list[str] = []
    steps: list[int] = []
    status = execute_run(run_id, settings=make_settings(pg_url, artifacts_dir=tmp_path / "artifacts"),
                         factory=pg_factory, on_phase=phases.append,
                         on_step=lambda step, total, metrics: steps.append(step))  # fmt: skip
    assert status == "succeeded"
    assert phases == [RunPhase.loading, RunPhase.preparing, RunPhase.saving]
    assert steps and steps[0] >= 1

    with session_scope(pg_factory) as session:
        run = session.get(Run, run_id)
        assert run is not None and run.status == RunStatus.succeeded
        assert run.phase == RunPhase.saving and sizing.current_phase(run) is None  # finished
        worker = session.scalars(select(Worker)).one()
        assert worker.hostname == hardware.hostname() and worker.device == hardware.detect().device
        assert worker.device == "cpu" or worker.device.startswith(("cuda:", "mps"))
        assert worker.memory_bytes and worker.memory_bytes > 2**20 and worker.cpu_count
        speed = worker.speeds["reward"]
        assert speed["unit"] == "pairs" and speed["runs"] == 1
        assert speed["s_per_unit"] > 0 and speed["overhead_s"] >= 0
        assert workers.fastest_live(session) is not None
        # the next estimate of this kind uses what was measured
        project = run.project_id
        from app.models import Project

        found = sizing.estimate(session, kind=RunKind.reward, project=session.get(Project, project),
                                config=run.config, worker=worker)  # fmt: skip
        assert found.measured and found.seconds is not None
        assert found.seconds == speed["overhead_s"] + 6 * speed["s_per_unit"]  # 3 steps x 2 pairs
        # 6 pairs, about 2 held out: called out before launch and beside the figures after
        assert any("Only 6 pairs" in w for w in found.warnings)
        cautions = sizing.run_cautions(session, run)
        assert any("held-out pair" in c and "too few to mean anything" in c for c in cautions), cautions
