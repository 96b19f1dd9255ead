"""A run's life: creation with a resolved config and a frozen snapshot, the state machine, cancel
and retry, progress and metrics.

States: queued -> running -> succeeded | failed | cancelled; queued -> cancelled.
A run is claimed by exactly one worker (`claim`); a second delivery of the same task finds it
running or finished and does nothing. It ends with `succeed`, `fail` or `cancel`; a trained
model version is registered (app/services/registry.py) in the same transaction that marks the
run succeeded, and only after its files are completely written.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from app.models import ModelVersion, Project, Run, RunItem, RunKind, RunLog, RunMetric, RunPhase, RunStatus
from app.models.types import utcnow
from app.run_kinds import KINDS
from app.services.runs.records import RunError, add_log, model_of_kind, snapshot_ids, store_snapshot
from app.services.runs.snapshots import select_snapshot

# A running run whose worker has not reported for this long is considered lost.
STALE_AFTER = timedelta(minutes=10)


def resolve_config(kind: RunKind, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate a (partial) config and return it with every default filled in."""
    try:
        return KINDS[kind].config(**dict(values or {})).model_dump(mode="json")
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in error.errors()
        )
        raise RunError(f"invalid {kind.value} config: {problems}") from None


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
    """A queued run with its resolved config and frozen snapshot. Enqueue after commit.

    The kind's model inputs (app/run_kinds.py) are checked: those on the run's columns
    (`base_model_id`, `reward_model_id`; a column the kind does not use stays empty) and those
    its config names (`judge_model_id`, `model_id`, ...). Then its data is chosen and frozen,
    as every run freezes its data: a judge run the comparisons it labels now.
    """
    spec = KINDS[kind]
    resolved = resolve_config(kind, config)
    given = {"base_model_id": base_model_id, "reward_model_id": reward_model_id}
    columns: dict[str, int | None] = {name: None for name in given}
    for need in spec.inputs:
        if need.on_run:
            assert need.kind is not None
            columns[need.field] = model_of_kind(session, given[need.field], need.kind, need.role).id
        elif need.kind is not None and (need.needed is None or need.needed(resolved)):
            model_of_kind(session, resolved[need.field], need.kind, need.role)
    snapshot = select_snapshot(session, spec.selects, project, resolved)
    run = Run(
        project_id=project.id,
        kind=kind,
        status=RunStatus.queued,
        config=resolved,
        created_by_id=created_by_id,
        schedule_id=schedule_id,
        parent_run_id=parent_run_id,
        snapshot_size=len(snapshot.ids) + sum(len(ids) for ids in snapshot.more.values()),
        **columns,
    )
    session.add(run)
    session.flush()
    store_snapshot(session, run.id, snapshot.item_kind, snapshot.ids)
    what = snapshot.what or kind.value
    counts = [f"{len(snapshot.ids)} {snapshot.item_kind.value}s"]
    for item_kind, ids in snapshot.more.items():
        store_snapshot(session, run.id, item_kind, ids)
        counts.append(f"{len(ids)} {item_kind.value}s")
    add_log(session, run.id, f"queued: {what} on {' and '.join(counts)}")
    return run


def retry_run(session: Session, *, run: Run, created_by_id: int | None) -> Run:
    """A new queued run with the same inputs, config and snapshot as a finished one."""
    if not run.status.finished:
        raise RunError("only a finished run can be retried")
    item_kinds = session.scalars(select(RunItem.item_kind).where(RunItem.run_id == run.id).distinct()).all()
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
    for item_kind in item_kinds:
        store_snapshot(session, again.id, item_kind, snapshot_ids(session, run.id, item_kind))
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
    """Store a step's metrics, the heartbeat and the training phase; returns True when a cancel
    was requested."""
    now = now or utcnow()
    rows = [
        {"run_id": run_id, "step": step, "name": name, "value": float(value), "created_at": now}
        for name, value in metrics.items()
        if value == value  # drop NaN
    ]
    if rows:
        session.execute(insert(RunMetric), rows)
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(step=step, total_steps=total, heartbeat_at=now, phase=RunPhase.training.value)
    )
    return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def set_phase(session: Session, *, run_id: int, phase: str, now: datetime | None = None) -> None:
    """What the run is doing now (a RunPhase value, or the trainer's own words); a heartbeat too."""
    values = {"phase": phase[:40], "heartbeat_at": now or utcnow()}
    session.execute(update(Run).where(Run.id == run_id).values(**values))


def succeed(
    session: Session,
    *,
    run: Run,
    summary: Mapping[str, Any],
    model: ModelVersion | None = None,
) -> None:
    """Mark the run succeeded with its summary; `model` is the version it registers (see
    app/services/registry.py, `register_trained`), added in this same transaction."""
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


def cancel(session: Session, *, run: Run) -> None:
    """The worker stopped a running run at a cancel request; nothing was saved."""
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


def recent_runs(session: Session, *, project_slug: str | None = None, limit: int = 200) -> list[Any]:
    """The newest runs as (run, project) rows, of one project when a slug is given."""
    query = select(Run, Project).join(Project, Project.id == Run.project_id)
    if project_slug:
        query = query.where(Project.slug == project_slug)
    return list(session.execute(query.order_by(Run.id.desc()).limit(limit)).all())


def recent_logs(session: Session, *, run_id: int, limit: int = 200) -> list[RunLog]:
    """A run's last `limit` log lines, oldest first."""
    logs = session.scalars(
        select(RunLog).where(RunLog.run_id == run_id).order_by(RunLog.id.desc()).limit(limit)
    ).all()
    return list(reversed(logs))
