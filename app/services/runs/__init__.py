"""Training runs: creation and the state machine (lifecycle), what a run freezes (snapshots),
AI judges (judges), what runs without a model store (results), and retraining schedules.
"""

from app.models import RunKind
from app.services.runs.judges import (
    JUDGE_USER_PREFIX,
    JudgeIdentity,
    judge_identity,
    judge_rubric,
    judge_user,
    judge_username,
    rubric_sha256,
)
from app.services.runs.lifecycle import (
    STALE_AFTER,
    cancel,
    claim,
    counts_by_status,
    create_run,
    fail,
    metric_series,
    reap_stale,
    record_progress,
    request_cancel,
    resolve_config,
    retry_run,
    succeed,
)
from app.services.runs.records import RunError, add_log, snapshot_ids
from app.services.runs.results import record_evaluation, store_generated, store_judgments
from app.services.runs.snapshots import held_out_judgment_ids

__all__ = [
    "JUDGE_USER_PREFIX",
    "STALE_AFTER",
    "JudgeIdentity",
    "RunError",
    "RunKind",
    "add_log",
    "cancel",
    "claim",
    "counts_by_status",
    "create_run",
    "fail",
    "held_out_judgment_ids",
    "judge_identity",
    "judge_rubric",
    "judge_user",
    "judge_username",
    "metric_series",
    "reap_stale",
    "record_evaluation",
    "record_progress",
    "request_cancel",
    "resolve_config",
    "retry_run",
    "rubric_sha256",
    "snapshot_ids",
    "store_generated",
    "store_judgments",
    "succeed",
]
