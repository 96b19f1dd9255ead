"""Execute one run: claim it, turn its snapshot into plain data, call the trainer, publish the
model and register it. Celery tasks, `rlhf train --now` and the tests all come through here.

Order matters for safety:
1. claim the run in its own transaction (a second delivery of the task finds it taken);
2. train into a private work directory (nothing visible yet);
3. publish the finished directory to the artifact store (a move, or an upload with a marker);
4. register the model version and mark the run succeeded in one transaction.
A crash before 4 leaves no registered model; the run is failed by the error handler, or by the
stale-heartbeat reaper if the whole process died. Generate, judge and evaluate runs register no
model: step 4 stores their pairs, AI judgments or evaluation figures instead.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker, session_scope
from app.models import (
    Comparison,
    Completion,
    Demonstration,
    ModelKind,
    ModelVersion,
    Project,
    Prompt,
    Run,
    RunKind,
    RunStatus,
)
from app.services import runs
from app.services.content import text_hash
from worker.reporter import DbReporter
from worker.training.base import Cancelled, ModelRef


@dataclass
class Job:
    """Everything a trainer needs, detached from the database."""

    run_id: int
    kind: RunKind
    config: dict[str, Any]
    project_id: int
    project_slug: str
    base: ModelRef | None
    base_model_id: int | None
    reward: ModelRef | None = None
    versus: ModelRef | None = None
    data: list[dict[str, Any]] = field(default_factory=list)
    # Judge and evaluate runs: their models by role, and what the database side needs back.
    models: dict[str, ModelRef] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


def model_ref(session: Session, model_id: int, cache_dir: Path | None = None) -> ModelRef:
    """A ModelRef for a registered version, following adapters down to full weights. Models in
    a remote store (STORAGE_URL such as s3://…) are fetched into `cache_dir` first."""
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise LookupError(f"model version {model_id} does not exist")
    cache_dir = cache_dir or Path(get_settings().artifacts_dir) / "cache"
    base = (
        model_ref(session, model.parent_id, cache_dir)
        if model.is_adapter and model.parent_id
        else None
    )
    uri = model.uri
    if "://" in uri:
        from worker.training.models import fetch

        uri = fetch(uri, cache_dir)
    return ModelRef(uri=uri, is_adapter=model.is_adapter, base=base)


def _preference_data(session: Session, run: Run, ids: list[int]) -> list[dict[str, Any]]:
    from app.services.preferences import preference_rows

    rows = preference_rows(
        session,
        project_id=run.project_id,
        judgment_ids=ids,
        aggregation=run.config["aggregation"],
        label_source=run.config["label_source"],
        include_both_bad=run.config["include_both_bad"],
        min_agreement=run.config["min_agreement"],
    )
    return [
        {
            "prompt_id": row.prompt_id,
            "messages": row.messages,
            "chosen": row.chosen,
            "rejected": row.rejected,
            "margin": row.margin,
        }
        for row in rows
    ]


def prepare(session: Session, run: Run) -> Job:
    project = session.get(Project, run.project_id)
    assert project is not None
    ids = runs.snapshot_ids(session, run.id)
    job = Job(
        run_id=run.id,
        kind=run.kind,
        config=dict(run.config),
        project_id=project.id,
        project_slug=project.slug,
        base=model_ref(session, run.base_model_id) if run.base_model_id else None,
        base_model_id=run.base_model_id,
    )
    if run.kind == RunKind.sft:
        rows = session.execute(
            select(Prompt.messages, Demonstration.response)
            .join(Prompt, Prompt.id == Demonstration.prompt_id)
            .where(Demonstration.id.in_(ids))
            .order_by(Demonstration.id)
        ).all()
        job.data = [{"messages": m, "response": r} for m, r in rows]
    elif run.kind in (RunKind.reward, RunKind.dpo):
        job.data = _preference_data(session, run, ids)
        if not job.data:
            raise ValueError(
                "no preference pairs after aggregation (ties, both-bad and split votes are "
                "dropped by the chosen rules)"
            )
    elif run.kind in (RunKind.judge, RunKind.evaluate):
        inputs = (runs.judge_inputs if run.kind == RunKind.judge else runs.evaluate_inputs)(session, run)
        job.data, job.context = inputs.data, inputs.context
        job.models = {role: model_ref(session, mid) for role, mid in inputs.model_ids.items()}
    else:
        rows = session.execute(
            select(Prompt.id, Prompt.messages).where(Prompt.id.in_(ids)).order_by(Prompt.id)
        ).all()
        job.data = [{"prompt_id": pid, "messages": m} for pid, m in rows]
        if run.kind == RunKind.ppo:
            assert run.reward_model_id is not None
            job.reward = model_ref(session, run.reward_model_id)
        if run.kind == RunKind.generate and run.config.get("versus_model_id"):
            job.versus = model_ref(session, run.config["versus_model_id"])
    return job


def train(job: Job, work_dir: Path, reporter: DbReporter, *, processes: int | None = None) -> Any:
    """Call the method's trainer: in this process, or in several through accelerate.

    `processes` is `processes_per_run` (default: the setting): 0 means every visible GPU. With
    more than one process the trainer runs under `accelerate launch` (worker.training.launch),
    which relays its progress to `reporter` and its cancellation back; the result is the same
    `TrainResult`, with the model in `work_dir / "model"`. Generation, judging and evaluation
    always run here.
    """
    if job.kind == RunKind.generate:
        return _generate(job, reporter)
    if job.kind in (RunKind.judge, RunKind.evaluate):
        return _judge_or_evaluate(job, reporter)
    from worker.training.launch import resolve_processes, run_distributed, run_trainer

    output = work_dir / "model"
    assert job.base is not None
    count = resolve_processes(get_settings().processes_per_run if processes is None else processes)
    if count > 1:
        return run_distributed(kind=job.kind.value, config=job.config, base=job.base, reward=job.reward,
                               data=job.data, output_dir=output, work_dir=work_dir, reporter=reporter,
                               num_processes=count)  # fmt: skip
    return run_trainer(kind=job.kind.value, config=job.config, base=job.base, reward=job.reward,
                       data=job.data, output_dir=output, reporter=reporter)  # fmt: skip


def _generate(job: Job, reporter: DbReporter) -> dict[str, Any]:
    from app.schemas.training import GenerateConfig
    from worker.training.generate import generate_completions, sampling_settings

    config = GenerateConfig(**job.config)
    prompts = [row["messages"] for row in job.data]
    assert job.base is not None
    if config.strategy == "two_samples":
        texts = generate_completions(
            policy=job.base, prompts=prompts, config=config, reporter=reporter, num_samples=2
        )
        pairs = [(t[0], t[1], job.base_model_id, job.base_model_id) for t in texts]
    else:
        assert job.versus is not None
        ours = generate_completions(
            policy=job.base, prompts=prompts, config=config, reporter=reporter, num_samples=1
        )
        theirs = generate_completions(
            policy=job.versus, prompts=prompts, config=config, reporter=reporter, num_samples=1
        )
        other_id = job.config["versus_model_id"]
        pairs = [(a[0], b[0], job.base_model_id, other_id) for a, b in zip(ours, theirs, strict=True)]
    return {"pairs": pairs, "sampling": sampling_settings(config)}


def _judge_or_evaluate(job: Job, reporter: DbReporter) -> dict[str, Any]:
    if job.kind == RunKind.judge:
        from app.schemas.training import JudgeConfig
        from worker.training.judge import run_judge

        return run_judge(config=JudgeConfig(**job.config), judge=job.models["judge"],
                         identity=job.context["judge"], data=job.data, reporter=reporter)  # fmt: skip
    from app.schemas.training import EvaluateConfig
    from worker.training.evaluate import run_evaluate

    return run_evaluate(config=EvaluateConfig(**job.config), models=job.models, context=job.context,
                        data=job.data, reporter=reporter)  # fmt: skip


def _store_generated(session: Session, job: Job, outcome: dict[str, Any]) -> dict[str, Any]:
    """New completions (with provenance) and comparisons in the rating queue."""
    created = skipped = 0
    rng = random.Random(job.config.get("seed", 0))
    for row, (text_a, text_b, model_a, model_b) in zip(job.data, outcome["pairs"], strict=True):
        if not text_a.strip() or not text_b.strip() or text_a == text_b:
            skipped += 1
            continue
        completions = [
            Completion(prompt_id=row["prompt_id"], text=text, content_hash=text_hash(text),
                       model_version_id=model_id, sampling=outcome["sampling"])
            for text, model_id in ((text_a, model_a), (text_b, model_b))
        ]  # fmt: skip
        session.add_all(completions)
        session.flush()
        if job.config.get("strategy") == "two_samples" and rng.random() < 0.5:
            completions.reverse()
        session.add(
            Comparison(project_id=job.project_id, prompt_id=row["prompt_id"],
                       completion_a_id=completions[0].id, completion_b_id=completions[1].id)
        )  # fmt: skip
        created += 1
    return {"comparisons_created": created, "pairs_skipped": skipped}


def execute_run(
    run_id: int,
    *,
    settings: Settings | None = None,
    factory: sessionmaker[Session] | None = None,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
) -> str:
    """Run a run to its end. Returns the final status (or "skipped" when it was not ours)."""
    settings = settings or get_settings()
    factory = factory or make_sessionmaker(make_engine(settings.database_url, pool_size=2))
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with session_scope(factory) as session:
        run = runs.claim(session, run_id=run_id, worker=worker)
        if run is None:
            return "skipped"
        try:
            job = prepare(session, run)
        except Exception as error:  # noqa: BLE001 - a bad snapshot fails the run, visibly
            runs.fail(session, run=run, error=f"{type(error).__name__}: {error}")
            return "failed"

    reporter = DbReporter(factory, run_id, on_step=on_step)
    sweep_work_dirs(Path(settings.artifacts_dir) / ".work", factory)
    work_dir = Path(settings.artifacts_dir) / ".work" / f"run-{run_id}-{uuid.uuid4().hex[:8]}"
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        outcome = train(job, work_dir, reporter, processes=settings.processes_per_run)
        reporter.flush()
        with session_scope(factory) as session:
            run = session.scalars(select(Run).where(Run.id == run_id).with_for_update()).one()
            if run.cancel_requested:
                raise Cancelled()
            if job.kind == RunKind.generate:
                runs.succeed(session, run=run, summary=_store_generated(session, job, outcome))
            elif job.kind in (RunKind.judge, RunKind.evaluate):
                store = runs.store_judgments if job.kind == RunKind.judge else runs.record_evaluation
                summary = store(session, run=run, context=job.context, outcome=outcome)
                runs.succeed(session, run=run, summary=summary)
            else:
                name = runs.unique_model_name(session, f"{job.project_slug}-{job.kind.value}-run{run_id}")
                uri = publish_model(outcome.output_dir, settings.storage_url, name)
                model = ModelVersion(
                    name=name,
                    kind=ModelKind.reward if job.kind == RunKind.reward else ModelKind.policy,
                    project_id=job.project_id,
                    parent_id=job.base_model_id,
                    run_id=run_id,
                    uri=uri,
                    is_adapter=outcome.is_adapter,
                    metrics=outcome.metrics,
                    description=f"{job.kind.value} run {run_id}",
                )
                runs.succeed(session, run=run, summary=outcome.metrics, model=model)
        return "succeeded"
    except Cancelled:
        with session_scope(factory) as session:
            run = session.get(Run, run_id)
            assert run is not None
            runs.cancelled(session, run=run)
        return "cancelled"
    except Exception as error:  # noqa: BLE001 - every failure is recorded on the run
        with session_scope(factory) as session:
            run = session.get(Run, run_id)
            assert run is not None
            runs.add_log(session, run_id, traceback.format_exc(), level="error")
            runs.fail(session, run=run, error=f"{type(error).__name__}: {error}")
        return "failed"
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


_WORK_DIR = re.compile(r"^run-(\d+)-[0-9a-f]{8}$")


def sweep_work_dirs(root: Path, factory: sessionmaker[Session]) -> list[Path]:
    """Remove the private work directories of finished runs left behind by a killed worker.

    A run's directory is removed when the run ends, except when its process dies (SIGKILL, out of
    memory, a lost host); then the reaper fails the run and its directory stays. Directories of
    runs that are still queued or running (maybe in another worker process on this host) are
    kept. Returns what was removed.
    """
    if not root.is_dir():
        return []
    found = {}
    for entry in root.iterdir():
        match = _WORK_DIR.match(entry.name)
        if match and entry.is_dir():
            found.setdefault(int(match.group(1)), []).append(entry)
    if not found:
        return []
    with factory() as session:
        finished = {
            run_id
            for run_id, status in session.execute(
                select(Run.id, Run.status).where(Run.id.in_(sorted(found)))
            )
            if RunStatus(status).finished
        }
        # A directory whose run row is gone (deleted project) is finished too.
        finished |= set(found) - set(session.scalars(select(Run.id).where(Run.id.in_(sorted(found)))))
    removed = []
    for run_id in sorted(finished):
        for entry in found[run_id]:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def publish_model(local_dir: Path, storage_url: str, name: str) -> str:
    from worker.training.models import publish

    return publish(local_dir, storage_url, name)
