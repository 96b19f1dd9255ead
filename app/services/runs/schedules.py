"""Retraining schedules: when N new judgments have arrived, run reward model -> PPO or DPO ->
generate, each step started when the previous one succeeded. Driven by Celery beat (`tick`).

The schedule's config holds the starting policy (`base_model_id`) and optional per-kind config
overrides (`judge`, `reward`, `ppo`, `dpo`, `generate`). The policy each chain starts from is the
newest policy a previous chain of this schedule produced, else `base_model_id`.

AI feedback in the loop: with a `judge_model_id`, each chain starts with a judge run over the
comparisons that judge has not labelled, and the reward and DPO runs train on human and AI labels
(`label_source` both, unless an override says otherwise). New comparisons then count toward the
trigger as well as new human judgments, since the judge will label them: the loop keeps turning
on the policy's own generations even while no person is rating.

Uncertainty selection in the loop: with `score_open_pairs` set in the config, a score run follows each
reward run (with the new reward model) and each generate run (with the chain's reward model), so
the open pairs, new ones included, carry the current model's uncertainty. A step with no open
pair to score is left out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import (
    Comparison,
    Judgment,
    JudgmentSource,
    ModelKind,
    Project,
    Run,
    RunKind,
    RunStatus,
    Schedule,
)
from app.models.types import utcnow
from app.run_kinds import KINDS, LOOP_GENERATE, LOOP_JUDGE, LOOP_REWARD, LOOP_SCORE, loop_methods, producing
from app.services.runs.lifecycle import create_run
from app.services.runs.records import RunError
from app.services.runs.snapshots import open_comparisons_query


def _latest_run(session: Session, schedule: Schedule) -> Run | None:
    return session.scalars(
        select(Run).where(Run.schedule_id == schedule.id).order_by(Run.id.desc()).limit(1)
    ).one_or_none()


def current_policy_id(session: Session, schedule: Schedule) -> int | None:
    produced = session.scalar(
        select(Run.output_model_id)
        .where(
            Run.schedule_id == schedule.id,
            Run.kind.in_(producing(ModelKind.policy)),
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


def new_comparisons(session: Session, schedule: Schedule) -> int:
    """Comparisons created since the last trigger (counted only when the schedule has a judge)."""
    if not schedule.config.get("judge_model_id"):
        return 0
    return int(
        session.scalar(
            select(func.count()).where(
                Comparison.project_id == schedule.project_id,
                Comparison.id > int(schedule.config.get("last_comparison_id") or 0),
            )
        )
        or 0
    )


def pending(session: Session, schedule: Schedule) -> int:
    """What counts toward the trigger: new human judgments, plus new comparisons with a judge."""
    return new_judgments(session, schedule) + new_comparisons(session, schedule)


def _overrides(schedule: Schedule, kind: RunKind) -> dict[str, Any]:
    """The schedule's config for `kind`; with a judge, runs that train on judgments take both
    human and AI labels unless the override says otherwise."""
    overrides = dict(schedule.config.get(kind.value) or {})
    if schedule.config.get("judge_model_id") and "label_source" in KINDS[kind].config.model_fields:
        overrides.setdefault("label_source", "both")
    return overrides


def _score_run(
    session: Session, schedule: Schedule, project: Project, last: Run, reward_id: int | None
) -> Run | None:
    """A score run after `last` when the schedule scores and there is an open pair to score."""
    if not schedule.config.get("score_open_pairs") or reward_id is None:
        return None
    if session.scalar(open_comparisons_query(project).limit(1)) is None:
        return None
    return create_run(session, project=project, kind=LOOP_SCORE, config=_overrides(schedule, LOOP_SCORE),
                      reward_model_id=reward_id, schedule_id=schedule.id, parent_run_id=last.id)  # fmt: skip


def _chain_reward_id(session: Session, last: Run) -> int | None:
    """The reward model of the chain `last` ends: the output of its nearest reward ancestor."""
    run: Run | None = last
    while run is not None:
        if run.kind == LOOP_REWARD:
            return run.output_model_id
        run = session.get(Run, run.parent_run_id) if run.parent_run_id else None
    return None


def _next_step(session: Session, schedule: Schedule, project: Project, last: Run) -> Run | None:
    """The run that follows a succeeded step of the chain, or None when the chain is complete."""
    common: dict[str, Any] = {"project": project, "schedule_id": schedule.id, "parent_run_id": last.id}
    if last.kind == LOOP_JUDGE:
        return _reward_run(session, schedule, project, parent_run_id=last.id)
    if last.kind == LOOP_REWARD:
        scoring = _score_run(session, schedule, project, last, last.output_model_id)
        if scoring is not None:
            return scoring
    if last.kind == LOOP_REWARD or (last.kind == LOOP_SCORE and _follows_reward(session, last)):
        method = schedule.method
        takes_reward = any(i.field == "reward_model_id" for i in KINDS[method].inputs)
        reward_id = last.output_model_id if last.kind == LOOP_REWARD else last.reward_model_id
        return create_run(
            session,
            kind=method,
            config=_overrides(schedule, method),
            base_model_id=current_policy_id(session, schedule),
            reward_model_id=reward_id if takes_reward else None,
            **common,
        )
    if last.kind in loop_methods():
        return create_run(
            session,
            kind=LOOP_GENERATE,
            config=_overrides(schedule, LOOP_GENERATE),
            base_model_id=last.output_model_id,
            **common,
        )
    if last.kind == LOOP_GENERATE:
        return _score_run(session, schedule, project, last, _chain_reward_id(session, last))
    return None


def _follows_reward(session: Session, run: Run) -> bool:
    parent = session.get(Run, run.parent_run_id) if run.parent_run_id else None
    return parent is not None and parent.kind == LOOP_REWARD


def _reward_run(
    session: Session, schedule: Schedule, project: Project, *, parent_run_id: int | None = None
) -> Run:
    return create_run(
        session,
        project=project,
        kind=LOOP_REWARD,
        config=_overrides(schedule, LOOP_REWARD),
        base_model_id=schedule.config.get("reward_base_model_id") or current_policy_id(session, schedule),
        schedule_id=schedule.id,
        parent_run_id=parent_run_id,
    )


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
            if pending(session, schedule) < schedule.min_new_judgments:
                continue
            if schedule.config.get("judge_model_id"):
                run = create_run(
                    session,
                    project=project,
                    kind=LOOP_JUDGE,
                    config={
                        "comparisons": "unjudged",
                        **_overrides(schedule, LOOP_JUDGE),
                        "judge_model_id": schedule.config["judge_model_id"],
                    },
                    schedule_id=schedule.id,
                )
            else:
                run = _reward_run(session, schedule, project)
        except RunError as error:
            schedule.enabled = False
            schedule.config = {**schedule.config, "last_error": str(error)}
            continue
        schedule.last_judgment_id = int(
            session.scalar(select(func.max(Judgment.id)).where(Judgment.project_id == project.id)) or 0
        )
        last_comparison = session.scalar(
            select(func.max(Comparison.id)).where(Comparison.project_id == project.id)
        )
        schedule.config = {**schedule.config, "last_comparison_id": int(last_comparison or 0)}
        schedule.last_triggered_at = utcnow()
        created.append(run.id)
    session.flush()
    return created


def overview(session: Session) -> list[tuple[Project, Schedule | None, int | None]]:
    """Every project with its schedule (if any) and the judgments that schedule waits on."""
    projects = session.scalars(select(Project).order_by(Project.name)).all()
    by_project = {s.project_id: s for s in session.scalars(select(Schedule))}
    return [
        (p, by_project.get(p.id), pending(session, by_project[p.id]) if p.id in by_project else None)
        for p in projects
    ]


def save(
    session: Session,
    *,
    project: Project,
    enabled: bool,
    min_new_judgments: int,
    method: RunKind,
    base_model_id: int,
    judge_model_id: int | None,
    score: bool | None = None,
) -> Schedule:
    """Create or change a project's schedule; a change clears the last error it recorded.
    `score` (None: as it was) adds a score run after each reward and generate run."""
    schedule = session.scalars(select(Schedule).where(Schedule.project_id == project.id)).one_or_none()
    if schedule is None:
        schedule = Schedule(project_id=project.id, config={})
        session.add(schedule)
    schedule.enabled = enabled
    schedule.min_new_judgments = min_new_judgments
    schedule.method = method
    schedule.config = {k: v for k, v in (schedule.config or {}).items() if k != "last_error"} | {
        "base_model_id": base_model_id,
        "judge_model_id": judge_model_id,
    }
    if score is not None:
        schedule.config = {**schedule.config, "score_open_pairs": score}
    return schedule
