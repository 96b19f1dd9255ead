"""The Celery worker and beat: `celery -A worker.celery_app worker -Q train,default` (or
`rlhf worker`), `celery -A worker.celery_app beat` (or `rlhf beat`). Configured by
app.queue.make_celery from the same settings as the web app."""

from __future__ import annotations

from app.config import get_settings
from app.queue import make_celery

settings = get_settings()
celery_app = make_celery(settings)
celery_app.conf.include = ["worker.tasks"]
celery_app.conf.beat_schedule = {
    # Retrain when enough new judgments have arrived (reward model -> PPO/DPO -> generate).
    "check-schedules": {
        "task": "worker.tasks.check_schedules",
        "schedule": float(settings.schedule_interval_s),
    },
    # Send runs that were created while the broker was down.
    "dispatch-pending": {"task": "worker.tasks.dispatch_pending", "schedule": 30.0},
    # Fail runs whose worker died (no heartbeat), so none stays "running" forever.
    "reap-stale-runs": {"task": "worker.tasks.reap_stale_runs", "schedule": 60.0},
}
app = celery_app
