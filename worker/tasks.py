"""Celery tasks: thin. They take ids, call the runner or a service, and are safe to run twice."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery.signals import worker_ready
from sqlalchemy import select

from app.config import get_settings
from app.db import make_engine, make_sessionmaker, session_scope
from app.models import Run, RunStatus
from app.queue import send_run
from app.services.runs import lifecycle, schedules
from worker import hardware
from worker.celery_app import celery_app
from worker.runner import execute_run as run_to_end

log = logging.getLogger(__name__)
_factory = None


def _sessions():  # type: ignore[no-untyped-def]
    global _factory
    if _factory is None:
        _factory = make_sessionmaker(make_engine(get_settings().database_url, pool_size=2))
    return _factory


@worker_ready.connect
def report_hardware(**_: object) -> None:
    """A started worker reports its device and memory, then keeps its row live while idle."""
    try:
        hardware.keep_reporting(_sessions())
    except Exception:  # noqa: BLE001 - the launch form falls back to CPU defaults
        log.warning("could not report this worker's hardware", exc_info=True)


@celery_app.task(name="worker.tasks.execute_run", acks_late=True, reject_on_worker_lost=True)
def execute_run(run_id: int) -> str:
    """Train one run. A second delivery finds the run taken or finished and returns at once."""
    return run_to_end(run_id, factory=_sessions())


@celery_app.task(name="worker.tasks.dispatch_pending")
def dispatch_pending() -> int:
    """Send queued runs that have no task yet (created while the broker was down)."""
    with session_scope(_sessions()) as session:
        pending = session.scalars(
            select(Run).where(Run.status == RunStatus.queued, Run.celery_task_id.is_(None))
        ).all()
        for run in pending:
            run.celery_task_id = send_run(run.id, celery=celery_app)
        return len(pending)


@celery_app.task(name="worker.tasks.reap_stale_runs")
def reap_stale_runs() -> list[int]:
    with session_scope(_sessions()) as session:
        return lifecycle.reap_stale(session, stale_after=timedelta(seconds=get_settings().stale_run_s))


@celery_app.task(name="worker.tasks.check_schedules")
def check_schedules() -> list[int]:
    """Start the retraining chain of every schedule whose project has enough new judgments,
    and advance chains whose previous run finished."""
    with session_scope(_sessions()) as session:
        started = schedules.tick(session)
    for run_id in started:
        task_id = send_run(run_id, celery=celery_app)
        with session_scope(_sessions()) as session:
            run = session.get(Run, run_id)
            if run is not None and task_id:
                run.celery_task_id = task_id
    return started
