"""Execute one run: claim it, turn its snapshot into plain data, call the trainer, publish the
model and register it. Celery tasks, `rlhf train --now` and the tests all come through here.

Order matters for safety:
1. claim the run in its own transaction (a second delivery of the task finds it taken);
2. train into a private work directory (nothing visible yet);
3. publish the finished directory to the artifact store (a move, or an upload with a marker);
4. register the model version and mark the run succeeded in one transaction (the registry,
   app/services/registry.py, creates the version from the trainer's `TrainResult`).
A crash before 4 leaves no registered model; the run is failed by the error handler, or by the
stale-heartbeat reaper if the whole process died. Kinds that register no model (generate, judge,
evaluate) train nothing to publish: step 4 stores their pairs, AI judgments or evaluation
figures instead (their `store` in worker/methods.py).

What differs between kinds is read from the two tables, app/run_kinds.py and worker/methods.py.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker, session_scope
from app.models import ModelVersion, Project, Run, RunPhase, RunStatus
from app.run_kinds import KINDS
from app.services import registry, workers
from app.services.runs import lifecycle
from app.services.runs.records import add_log, snapshot_ids
from worker import hardware
from worker.methods import METHODS, Work
from worker.reporter import DbReporter
from worker.training.base import Cancelled, ModelRef

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Job(Work):
    """Everything a run's entry point needs, detached from the database, and the ids the runner
    keeps for publishing and storing its result."""

    run_id: int
    project_id: int
    project_slug: str
    base_model_id: int | None
    note: str = ""  # the builder's count of its rows, for the run's log


def model_ref(session: Session, model_id: int, cache_dir: Path | None = None) -> ModelRef:
    """A ModelRef for a registered version, following adapters down to full weights. Models in
    a remote store (STORAGE_URL such as s3://…) are fetched into `cache_dir` first."""
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise LookupError(f"model version {model_id} does not exist")
    if model.pruned_at is not None:
        raise LookupError(
            f"model version {model.name} was pruned on {model.pruned_at:%Y-%m-%d}: its files are gone"
        )
    cache_dir = cache_dir or Path(get_settings().artifacts_dir) / "cache"
    base = model_ref(session, model.parent_id, cache_dir) if model.is_adapter and model.parent_id else None
    uri = model.uri
    if "://" in uri:
        from worker.training.models import fetch

        uri = fetch(uri, cache_dir)
    return ModelRef(uri=uri, is_adapter=model.is_adapter, base=base)


def prepare(session: Session, run: Run) -> Job:
    """The run's snapshot as plain data (its kind's builder, worker/methods.py) and references
    to the model versions it is given (app/run_kinds.py: the base, then the others by role)."""
    project = session.get(Project, run.project_id)
    assert project is not None
    job = Job(
        run_id=run.id,
        kind=run.kind,
        config=dict(run.config),
        project_id=project.id,
        project_slug=project.slug,
        base=model_ref(session, run.base_model_id) if run.base_model_id else None,
        base_model_id=run.base_model_id,
    )
    built = METHODS[run.kind].build(session, run, snapshot_ids(session, run.id))
    job.data, job.context, job.note = built.data, built.context, built.note
    for role, version_id in built.models.items():
        job.models[role] = model_ref(session, version_id)
    for need in KINDS[run.kind].inputs:
        model_id = getattr(run, need.field) if need.on_run else run.config.get(need.field)
        if need.name != "base" and model_id:
            job.models[need.name] = model_ref(session, model_id)
    return job


def train(job: Job, work_dir: Path, reporter: DbReporter, *, processes: int | None = None) -> Any:
    """Call the kind's entry point: in this process, or, for a trainer, in several processes
    through accelerate.

    `processes` is `processes_per_run` (default: the setting): 0 means every visible GPU. With
    more than one process the trainer runs under `accelerate launch` (worker.training.launch),
    which relays its progress to `reporter` and its cancellation back; the result is the same
    `TrainResult`, with the model in `work_dir / "model"`. Kinds with `distributed` false in
    app/run_kinds.py (generation, judging, evaluation) always run here.
    """
    output = work_dir / "model"
    if not KINDS[job.kind].distributed:
        job.output_dir = output
        return METHODS[job.kind].run(job, reporter)
    from worker.training import launch

    assert job.base is not None
    reward = job.models.get("reward")
    count = launch.resolve_processes(get_settings().processes_per_run if processes is None else processes)
    if count > 1:
        return launch.run_distributed(kind=job.kind.value, config=job.config, base=job.base, reward=reward,
                                      data=job.data, output_dir=output, work_dir=work_dir, reporter=reporter,
                                      num_processes=count)  # fmt: skip
    return launch.run_trainer(kind=job.kind.value, config=job.config, base=job.base, reward=reward,
                              data=job.data, output_dir=output, reporter=reporter)  # fmt: skip


def execute_run(
    run_id: int,
    *,
    settings: Settings | None = None,
    factory: sessionmaker[Session] | None = None,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> str:
    """Run a run to its end. Returns the final status (or "skipped" when it was not ours).

    `on_step`, `on_log` and `on_phase` see the run's steps, log lines and phases as they are
    reported (the CLI's `--now` shows them). The host's worker row is reported before the run
    trains, touched with its heartbeat, and given the run's measured speed when it succeeds."""
    settings = settings or get_settings()
    factory = factory or make_sessionmaker(make_engine(settings.database_url, pool_size=2))
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with session_scope(factory) as session:
        run = lifecycle.claim(session, run_id=run_id, worker=worker)
        if run is None:
            return "skipped"
        run.phase = RunPhase.reading.value
        try:
            job = prepare(session, run)
        except Exception as error:  # noqa: BLE001 - a bad snapshot fails the run, visibly
            lifecycle.fail(session, run=run, error=f"{type(error).__name__}: {error}")
            return "failed"

    host = _report_hardware(factory)
    reporter = DbReporter(factory, run_id, on_step=on_step, on_log=on_log, on_phase=on_phase, hostname=host)
    if job.note:
        reporter.log(job.note)
    sweep_work_dirs(Path(settings.artifacts_dir) / ".work", factory)
    work_dir = Path(settings.artifacts_dir) / ".work" / f"run-{run_id}-{uuid.uuid4().hex[:8]}"
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        reporter.phase(RunPhase.loading)
        started = time.monotonic()
        outcome = train(job, work_dir, reporter, processes=settings.processes_per_run)
        ended = time.monotonic()
        reporter.phase(RunPhase.saving)
        with session_scope(factory) as session:
            run = session.scalars(select(Run).where(Run.id == run_id).with_for_update()).one()
            if run.cancel_requested:
                raise Cancelled()
            store = METHODS[job.kind].store
            if store is not None:
                lifecycle.succeed(session, run=run, summary=store(session, run, job, outcome))
            else:
                name = registry.trained_name(session, run)
                uri = publish_model(outcome.output_dir, settings.storage_url, name)
                registry.register_trained(session, run=run, name=name, uri=uri,
                                          is_adapter=outcome.is_adapter, metrics=outcome.metrics)  # fmt: skip
        if host is not None:
            _record_speed(factory, host, job, reporter, started, ended)
        return "succeeded"
    except Cancelled:
        with session_scope(factory) as session:
            run = session.get(Run, run_id)
            assert run is not None
            lifecycle.cancel(session, run=run)
        return "cancelled"
    except Exception as error:  # noqa: BLE001 - every failure is recorded on the run
        with session_scope(factory) as session:
            run = session.get(Run, run_id)
            assert run is not None
            add_log(session, run_id, traceback.format_exc(), level="error")
            lifecycle.fail(session, run=run, error=f"{type(error).__name__}: {error}")
        return "failed"
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _report_hardware(factory: sessionmaker[Session]) -> str | None:
    """This host's worker row (its device and memory); None when it could not be written."""
    try:
        hardware.report(factory)
    except Exception:  # noqa: BLE001 - the run trains all the same
        log.warning("could not report this worker's hardware", exc_info=True)
        return None
    return hardware.hostname()


def measured_speed(started: float, ended: float, reporter: DbReporter) -> tuple[float, float]:
    """(seconds of steps, overhead seconds) of a run that trained between `started` and `ended`
    (monotonic seconds): the time per step from the first to the last reported step, the rest of the
    time before the first step being overhead (loading, tokenising)."""
    total = ended - started
    first, last = reporter.first_step, reporter.last_step
    if first is None or last is None or last[1] <= first[1]:
        return total, 0.0
    per_step = (last[0] - first[0]) / (last[1] - first[1])
    overhead = min(total, max(0.0, first[0] - started - per_step * first[1]))
    return total - overhead, overhead


def _record_speed(factory: sessionmaker[Session], host: str, job: Job, reporter: DbReporter,
                  started: float, ended: float) -> None:  # fmt: skip
    units = KINDS[job.kind].sizing.work(job.config, len(job.data))
    seconds, overhead = measured_speed(started, ended, reporter)
    try:
        with session_scope(factory) as session:
            workers.record_speed(session, hostname=host, kind=job.kind, units=units, seconds=seconds,
                                 overhead_s=overhead)  # fmt: skip
    except Exception:  # noqa: BLE001 - the run succeeded; its speed is a hint for the next ones
        log.warning("could not record run %s's speed", job.run_id, exc_info=True)


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
    found: dict[int, list[Path]] = {}
    for entry in root.iterdir():
        match = _WORK_DIR.match(entry.name)
        if match and entry.is_dir():
            found.setdefault(int(match.group(1)), []).append(entry)
    if not found:
        return []
    with factory() as session:
        finished = {
            run_id
            for run_id, status in session.execute(select(Run.id, Run.status).where(Run.id.in_(sorted(found))))
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
