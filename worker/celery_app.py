"""The Celery application, configured from the same settings as the web app.

Training tasks go to the `train` queue: one task per worker process at a time (prefetch 1), acked
only when done (`acks_late`), and a broker visibility timeout longer than the longest run, so a
run is never handed to a second worker while the first is still training it. Light tasks go to
`default`. The embedded default broker is kombu's SQLAlchemy transport on a SQLite file, so a
bare machine needs no Redis; production sets BROKER_URL to Redis.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app.config import get_settings

# Longest run we expect (s). Redis re-delivers an unacked task after this long.
VISIBILITY_TIMEOUT_S = 24 * 3600


def make_celery() -> Celery:
    settings = get_settings()
    app = Celery("rlhf_studio", broker=settings.broker_url, include=[])
    app.conf.update(
        task_queues=[Queue("default"), Queue("train")],
        task_default_queue="default",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        timezone="UTC",
    )
    return app


celery_app = make_celery()
