"""Training runs: creation with a resolved config and a frozen snapshot, the state machine,
cancel and retry, metrics, and the model registry's writes.

States: queued -> running -> succeeded | failed | cancelled; queued -> cancelled.
A run is claimed by exactly one worker (`claim`); a second delivery of the same task finds it
running or finished and does nothing. A model version is registered in the same transaction that
marks the run succeeded, and only after its files are completely written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from app.models import (
    Demonstration,
    Judgment,
    JudgmentSource,
    ModelKind,
    ModelVersion,
    Project,
    Prompt,
    Run,
    RunItem,
    RunKind,
    RunLog,
    RunMetric,
    RunStatus,
    SnapshotItemKind,
)
from app.models.types import utcnow
from app.schemas.training import CONFIGS

# A running run whose worker has not reported for this long is considered lost.
STALE_AFTER = timedelta(minutes=10)


class RunError(ValueError):
    """A run cannot be created or changed as asked; the message says why."""


def resolve_config(kind: RunKind, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a (partial) config and return it with every default filled in."""
    schema: type[BaseModel] = CONFIGS[kind.value]
    try:
        return schema(**dict(values or {})).model_dump(mode="json")
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in error.errors()
        )
        raise RunError(f"invalid {kind.value} config: {problems}") from None


def _model(session: Session, model_id: int | None, kind: ModelKind, role: str) -> ModelVersion:
    if model_id is None:
        raise RunError(f"choose a {role}")
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise RunError(f"{role}: no model version {model_id}")
    if model.kind != kind:
        raise RunError(f"{role}: model version {model.name!r} is a {model.kind.value} model")
    return model


def _sources(label_source: str) -> list[JudgmentSource]:
    return {
        "human": [JudgmentSource.human],
        "ai": [JudgmentSource.ai],
        "both": [JudgmentSource.human, JudgmentSource.ai],
    }[label_source]


def _snapshot_ids(
    session: Session, *, project: Project, kind: RunKind, config: dict[str, Any]
) -> tuple[SnapshotItemKind, list[int]]:
    if kind == RunKind.sft:
        ids = session.scalars(
            select(Demonstration.id).where(Demonstration.project_id == project.id).order_by(Demonstration.id)
        ).all()
        if not ids:
            raise RunError("the project has no demonstrations to fine-tune on; import some first")
        return SnapshotItemKind.demonstration, list(ids)
    if kind in (RunKind.reward, RunKind.dpo):
        ids = session.scalars(
            select(Judgment.id)
            .where(
                Judgment.project_id == project.id,
                Judgment.source.in_(_sources(config["label_source"])),
            )
            .order_by(Judgment.id)
        ).all()
        if not ids:
            raise RunError(f"the project has no {config['label_source']} judgments yet")
        return SnapshotItemKind.judgment, list(ids)
    # PPO and generation work from prompts (newest first for generation).
    query = select(Prompt.id).where(Prompt.project_id == project.id)
    if kind == RunKind.generate:
        query = query.order_by(Prompt.id.desc()).limit(config["num_prompts"])
    ids = list(session.scalars(query.order_by(Prompt.id)).all())
    if not ids:
        raise RunError("the project has no prompts")
    return SnapshotItemKind.prompt, ids


def create_run(
    session: Session,
    *,
    project: Project,
    kind: RunKind,
    config: Mapping[str, Any] | None = None,
    base_model_id: int | None = None,
    reward_model_id: int | None = None,
    created_by_id: int | None = None,
    schedule_id: int | None = None,
    parent_run_id: int | None = None,
) -> Run:
    """A queued run with its resolved config and frozen snapshot. Enqueue after commit."""
    resolved = resolve_config(kind, config)
    _model(session, base_model_id, ModelKind.policy, "base model" if kind != RunKind.ppo else "policy")
    if kind == RunKind.ppo:
        _model(session, reward_model_id, ModelKind.reward, "reward model")
    if kind == RunKind.generate and resolved["strategy"] == "versus":
        _model(session, resolved["versus_model_id"], ModelKind.policy, "the version to compare with")
    item_kind, ids = _snapshot_ids(session, project=project, kind=kind, config=resolved)
    run = Run(
        project_id=project.id,
        kind=kind,
        status=RunStatus.queued,
        config=resolved,
        base_model_id=base_model_id,
        reward_model_id=reward_model_id if kind == RunKind.ppo else None,
        created_by_id=created_by_id,
        schedule_id=schedule_id,
        parent_run_id=parent_run_id,
        snapshot_size=len(ids),
    )
    session.add(run)
    session.flush()
    _store_snapshot(session, run.id, item_kind, ids)
    add_log(session, run.id, f"queued: {kind.value} on {len(ids)} {item_kind.value}s")
    return run


def _store_snapshot(session: Session, run_id: int, kind: SnapshotItemKind, ids: Iterable[int]) -> None:
    batch: list[dict[str, Any]] = []
    for item_id in ids:
        batch.append({"run_id": run_id, "item_kind": kind.value, "item_id": item_id})
        if len(batch) == 5000:
            session.execute(insert(RunItem), batch)
            batch = []
    if batch:
        session.execute(insert(RunItem), batch)


def snapshot_ids(session: Session, run_id: int) -> list[int]:
    return list(
        session.scalars(select(RunItem.item_id).where(RunItem.run_id == run_id).order_by(RunItem.item_id))
    )


def retry_run(session: Session, *, run: Run, created_by_id: int | None) -> Run:
    """A new queued run with the same inputs, config and snapshot as a finished one."""
    if not run.status.finished:
        raise RunError("only a finished run can be retried")
    item_kind = session.scalar(select(RunItem.item_kind).where(RunItem.run_id == run.id).limit(1))
    again = Run(
        project_id=run.project_id,
        kind=run.kind,
        status=RunStatus.queued,
        config=dict(run.config),
        base_model_id=run.base_model_id,
        reward_model_id=run.reward_model_id,
        created_by_id=created_by_id,
        parent_run_id=run.parent_run_id,
        snapshot_size=run.snapshot_size,
    )
    session.add(again)
    session.flush()
    if item_kind is not None:
        _store_snapshot(session, again.id, item_kind, snapshot_ids(session, run.id))
    add_log(session, again.id, f"queued: retry of run {run.id}")
    return again


def request_cancel(session: Session, *, run: Run) -> str | None:
    """Cancel a run. A queued one ends at once (returns its task id, to revoke); a running one
    stops cleanly at its next step."""
    if run.status.finished:
        raise RunError(f"run {run.id} has already {run.status.value}")
    if run.status == RunStatus.queued:
        run.status = RunStatus.cancelled
        run.finished_at = utcnow()
        add_log(session, run.id, "cancelled before it started")
        return run.celery_task_id
    run.cancel_requested = True
    add_log(session, run.id, "cancel requested; the worker stops at its next step")
    return None


# --- the worker's side ----------------------------------------------------------------------


def claim(
    session: Session,
    *,
    run_id: int,
    worker: str,
    now: datetime | None = None,
    stale_after: timedelta = STALE_AFTER,
) -> Run | None:
    """Take a queued run for this worker. None when it is finished, cancelled, or running
    elsewhere: a task delivered twice runs once. A run found `running` with a stale heartbeat
    belonged to a worker that died; it is marked failed rather than trained again blindly."""
    now = now or utcnow()
    run = session.scalars(select(Run).where(Run.id == run_id).with_for_update()).one_or_none()
    if run is None or run.status.finished:
        return None
    if run.status == RunStatus.running:
        if run.heartbeat_at and now - run.heartbeat_at > stale_after:
            fail(session, run=run, error=f"the worker {run.worker} stopped reporting; run abandoned")
        return None
    run.status = RunStatus.running
    run.worker = worker
    run.started_at = run.heartbeat_at = now
    add_log(session, run.id, f"started on {worker}")
    return run


def record_progress(
    session: Session,
    *,
    run_id: int,
    step: int,
    total: int,
    metrics: Mapping[str, float],
    now: datetime | None = None,
) -> bool:
    """Store a step's metrics and the heartbeat; returns True when a cancel was requested."""
    now = now or utcnow()
    rows = [
        {"run_id": run_id, "step": step, "name": name, "value": float(value), "created_at": now}
        for name, value in metrics.items()
        if value == value  # drop NaN
    ]
    if rows:
        session.execute(insert(RunMetric), rows)
    session.execute(
        update(Run).where(Run.id == run_id).values(step=step, total_steps=total, heartbeat_at=now)
    )
    return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def add_log(session: Session, run_id: int, message: str, level: str = "info") -> None:
    session.add(RunLog(run_id=run_id, level=level, message=message[:20000]))


def succeed(
    session: Session,
    *,
    run: Run,
    summary: Mapping[str, Any],
    model: ModelVersion | None = None,
) -> None:
    if model is not None:
        session.add(model)
        session.flush()
        run.output_model_id = model.id
        add_log(session, run.id, f"registered model version {model.name}")
    run.status = RunStatus.succeeded
    run.summary = dict(summary)
    run.finished_at = utcnow()
    add_log(session, run.id, "succeeded")


def fail(session: Session, *, run: Run, error: str) -> None:
    run.status = RunStatus.failed
    run.error = error
    run.finished_at = utcnow()
    add_log(session, run.id, f"failed: {error}", level="error")


def cancelled(session: Session, *, run: Run) -> None:
    run.status = RunStatus.cancelled
    run.finished_at = utcnow()
    add_log(session, run.id, "cancelled; nothing was saved")


def reap_stale(
    session: Session, *, now: datetime | None = None, stale_after: timedelta = STALE_AFTER
) -> list[int]:
    """Fail runs whose worker stopped reporting (killed, out of memory, machine lost)."""
    now = now or utcnow()
    stale = session.scalars(
        select(Run)
        .where(Run.status == RunStatus.running, Run.heartbeat_at < now - stale_after)
        .with_for_update(skip_locked=True)
    ).all()
    for run in stale:
        fail(session, run=run, error=f"the worker {run.worker} stopped reporting; run abandoned")
    return [run.id for run in stale]


def unique_model_name(session: Session, base: str) -> str:
    taken = set(session.scalars(select(ModelVersion.name).where(ModelVersion.name.like(f"{base}%"))))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def metric_series(
    session: Session, *, run_id: int, after_id: int = 0
) -> tuple[dict[str, list[tuple[int, float]]], int]:
    """Metrics by name as (step, value) lists, and the last metric id (for incremental polls)."""
    series: dict[str, list[tuple[int, float]]] = {}
    last = after_id
    for metric_id, step, name, value in session.execute(
        select(RunMetric.id, RunMetric.step, RunMetric.name, RunMetric.value)
        .where(RunMetric.run_id == run_id, RunMetric.id > after_id)
        .order_by(RunMetric.id)
    ):
        series.setdefault(name, []).append((step, value))
        last = metric_id
    return series, last


def counts_by_status(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())
