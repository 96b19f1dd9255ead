"""The Celery client side: the web process enqueues tasks by name and never imports the worker.

The same `make_celery` configures the worker (worker/celery_app.py), so both agree on queues,
acknowledgement and visibility timeout. A broker that is down does not lose a run: the run row
is committed first and stays `queued` without a task id until `dispatch_pending` (Celery beat, or
`rlhf runs dispatch`) sends it.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from celery import Celery
from kombu import Queue

from app.config import Settings, get_settings

log = logging.getLogger(__name__)

EXECUTE_RUN = "worker.tasks.execute_run"
TRAIN_QUEUE = "train"
DEFAULT_QUEUE = "default"
# Longest run we expect (s). Redis re-delivers an unacknowledged task after this long.
VISIBILITY_TIMEOUT_S = 24 * 3600


def make_celery(settings: Settings) -> Celery:
    app = Celery("rlhf_studio", broker=settings.broker_url)
    app.conf.update(
        task_queues=[Queue(DEFAULT_QUEUE), Queue(TRAIN_QUEUE)],
        task_default_queue=DEFAULT_QUEUE,
        task_acks_late=True,  # a task is acknowledged when done, not when received
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # one training task per worker process at a time
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        task_ignore_result=True,
        timezone="UTC",
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    if settings.broker_url.startswith("sqla+"):
        # kombu's SQLAlchemy transport hands its transport options to create_engine (any other
        # key crashes the worker), so its polling interval is set on the transport class, whose
        # drain_events sleeps that long between empty polls.
        from kombu.transport.sqlalchemy import Transport

        Transport.polling_interval = 0.5
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return app


@lru_cache
def client() -> Celery:
    return make_celery(get_settings())


def send_run(run_id: int, *, celery: Celery | None = None) -> str | None:
    """Enqueue a run on the train queue; returns the task id, or None if the broker is down."""
    celery = celery or client()
    try:
        result = celery.send_task(
            EXECUTE_RUN, args=[run_id], queue=TRAIN_QUEUE, retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )  # fmt: skip
    except Exception as error:  # noqa: BLE001 - any broker failure: the run waits, nothing lost
        log.warning("could not enqueue run %s (%s); it waits for dispatch", run_id, error)
        return None
    return str(result.id)


def revoke(task_id: str, *, celery: Celery | None = None) -> None:
    celery = celery or client()
    try:
        celery.control.revoke(task_id)
    except Exception as error:  # noqa: BLE001 - the worker also checks the run's status
        log.warning("could not revoke task %s: %s", task_id, error)
