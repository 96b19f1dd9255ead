"""Retraining schedules: when N new judgments have arrived, run reward model -> PPO or DPO ->
generate, each step started when the previous one succeeded. Driven by Celery beat (`tick`).

The schedule's config holds the starting policy (`base_model_id`) and optional per-kind config
overrides (`reward`, `ppo`, `dpo`, `generate`). The policy each chain starts from is the newest
policy a previous chain of this schedule produced, else `base_model_id`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import (
    Judgment,
    JudgmentSource,
    Project,
    Run,
    RunKind,
    RunStatus,
    Schedule,
)
from app.models.types import utcnow
from app.services import runs


def _latest_run(session: Session, schedule: Schedule) -> Run | None:
    return session.scalars(
        select(Run).where(Run.schedule_id == schedule.id).order_by(Run.id.desc()).limit(1)
    ).one_or_none()


def current_policy_id(session: Session, schedule: Schedule) -> int | None:
    produced = session.scalar(
        select(Run.output_model_id)
        .where(
            Run.schedule_id == schedule.id,
            Run.kind.in_([RunKind.ppo, RunKind.dpo]),
            Run.status == RunStatus.succeeded,
        )
        .order_by(Run.id.desc())
        .limit(1)
    )
    return produced or schedule.config.get("base_model_id")


def new_judgments(session: Session, schedule: Schedule) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                Judgment.project_id == schedule.project_id,
                Judgment.source == JudgmentSource.human,
                Judgment.id > schedule.last_judgment_id,
            )
        )
        or 0
    )


def _overrides(schedule: Schedule, kind: str) -> dict[str, Any]:
    return dict(schedule.config.get(kind) or {})


def _next_step(session: Session, schedule: Schedule, project: Project, last: Run) -> Run | None:
    """The run that follows a succeeded step of the chain, or None when the chain is complete."""
    common = {"project": project, "schedule_id": schedule.id, "parent_run_id": last.id}
    if last.kind == RunKind.reward:
        method = schedule.method
        return runs.create_run(
            session,
            kind=method,
            config=_overrides(schedule, method.value),
            base_model_id=current_policy_id(session, schedule),
            reward_model_id=last.output_model_id if method == RunKind.ppo else None,
            **common,
        )
    if last.kind in (RunKind.ppo, RunKind.dpo):
        return runs.create_run(
            session,
            kind=RunKind.generate,
            config=_overrides(schedule, "generate"),
            base_model_id=last.output_model_id,
            **common,
        )
    return None


def tick(session: Session) -> list[int]:
    """Advance every enabled schedule by at most one run; returns the ids of created runs."""
    created: list[int] = []
    for schedule in session.scalars(select(Schedule).where(Schedule.enabled.is_(True))).all():
        project = session.get(Project, schedule.project_id)
        if project is None:
            continue
        last = _latest_run(session, schedule)
        if last is not None and not last.status.finished:
            continue  # a step is queued or running
        try:
            if last is not None and last.status == RunStatus.succeeded:
                follow = _next_step(session, schedule, project, last)
                if follow is not None:
                    created.append(follow.id)
                    continue
            if new_judgments(session, schedule) < schedule.min_new_judgments:
                continue
            policy_id = current_policy_id(session, schedule)
            run = runs.create_run(
                session,
                project=project,
                kind=RunKind.reward,
                config=_overrides(schedule, "reward"),
                base_model_id=schedule.config.get("reward_base_model_id") or policy_id,
                schedule_id=schedule.id,
            )
        except runs.RunError as error:
            schedule.enabled = False
            schedule.config = {**schedule.config, "last_error": str(error)}
            continue
        schedule.last_judgment_id = int(
            session.scalar(select(func.max(Judgment.id)).where(Judgment.project_id == project.id)) or 0
        )
        schedule.last_triggered_at = utcnow()
        created.append(run.id)
    session.flush()
    return created
