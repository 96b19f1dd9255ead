"""Training runs: creation with a resolved config and a frozen snapshot, the state machine,
cancel and retry, metrics, and the model registry's writes.

States: queued -> running -> succeeded | failed | cancelled; queued -> cancelled.
A run is claimed by exactly one worker (`claim`); a second delivery of the same task finds it
running or finished and does nothing. A model version is registered in the same transaction that
marks the run succeeded, and only after its files are completely written.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from app.models import (
    Comparison,
    Completion,
    Demonstration,
    Judgment,
    JudgmentSource,
    ModelKind,
    ModelVersion,
    Project,
    Prompt,
    Role,
    Run,
    RunItem,
    RunKind,
    RunLog,
    RunMetric,
    RunStatus,
    SnapshotItemKind,
    User,
)
from app.models.types import utcnow
from app.schemas.training import CONFIGS, JUDGE_TEMPLATE

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
        which = Judgment.source.in_(_sources(config["label_source"]))
        if config.get("ai_judge") and config["label_source"] != "human":
            judge_id = session.scalar(
                select(User.id).where(User.username == config["ai_judge"], User.role == Role.judge)
            )
            if judge_id is None:
                raise RunError(f"ai_judge: no AI judge named {config['ai_judge']!r}")
            only_judge = and_(Judgment.source == JudgmentSource.ai, Judgment.rater_id == judge_id)
            which = or_(Judgment.source == JudgmentSource.human, only_judge)
            if config["label_source"] == "ai":
                which = only_judge
        ids = session.scalars(
            select(Judgment.id).where(Judgment.project_id == project.id, which).order_by(Judgment.id)
        ).all()
        if not ids:
            raise RunError(f"the project has no {config['label_source']} judgments yet")
        return SnapshotItemKind.judgment, list(ids)
    if kind == RunKind.evaluate and config["_evaluates"] == ModelKind.reward.value:
        ids = held_out_judgment_ids(session, project_id=project.id, model_id=config["model_id"])
        if not ids:
            raise RunError(
                "no held-out human judgments: every human-judged comparison of the project was "
                "in the reward model's training snapshot"
            )
        return SnapshotItemKind.judgment, ids
    # PPO, generation and policy evaluation work from prompts (newest first for generation and
    # evaluation).
    query = select(Prompt.id).where(Prompt.project_id == project.id)
    if kind in (RunKind.generate, RunKind.evaluate):
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
    """A queued run with its resolved config and frozen snapshot. Enqueue after commit.

    Judge and evaluate runs name their models in the config (`judge_model_id`, `model_id`,
    `reference_model_id`), not in `base_model_id` / `reward_model_id`. A judge run freezes the
    comparisons it labels now, as every run freezes its data.
    """
    resolved = resolve_config(kind, config)
    if kind in (RunKind.judge, RunKind.evaluate):
        item_kind, ids, what = _ai_run_inputs(session, project=project, kind=kind, resolved=resolved)
        base_model_id = reward_model_id = None
    else:
        _model(session, base_model_id, ModelKind.policy, "base model" if kind != RunKind.ppo else "policy")
        if kind == RunKind.ppo:
            _model(session, reward_model_id, ModelKind.reward, "reward model")
        if kind == RunKind.generate and resolved["strategy"] == "versus":
            _model(session, resolved["versus_model_id"], ModelKind.policy, "the version to compare with")
        item_kind, ids = _snapshot_ids(session, project=project, kind=kind, config=resolved)
        what = kind.value
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
    add_log(session, run.id, f"queued: {what} on {len(ids)} {item_kind.value}s")
    return run


def _any_model(session: Session, model_id: int | None, role: str) -> ModelVersion:
    if model_id is None:
        raise RunError(f"choose {role}")
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise RunError(f"{role}: no model version {model_id}")
    return model


def _ai_run_inputs(
    session: Session, *, project: Project, kind: RunKind, resolved: dict[str, Any]
) -> tuple[SnapshotItemKind, list[int], str]:
    """A judge or evaluate run's models are checked, an evaluated policy's reference is
    resolved into the config, and the data to freeze is chosen (the comparisons to judge;
    held-out judgments or prompts to evaluate on). Returns (item kind, ids, what it does)."""
    if kind == RunKind.judge:
        judge = _any_model(session, resolved["judge_model_id"], "a judge model (judge_model_id)")
        has_pairs = session.scalar(select(exists().where(Comparison.project_id == project.id)))
        if not has_pairs:
            raise RunError("the project has no comparisons to judge")
        what = f"judge with {judge.name} ({judge.kind.value}), {resolved['comparisons']}"
        # The pairs are chosen now and frozen, like every run's data.
        item_kind, ids = SnapshotItemKind.comparison, _judge_selection(session, project, resolved)
    else:
        model = _any_model(session, resolved["model_id"], "the model version to evaluate (model_id)")
        if model.kind == ModelKind.policy:
            reference_id = resolved["reference_model_id"] or model.parent_id
            if reference_id is None:
                raise RunError(
                    f"the policy {model.name!r} has no parent: choose a reference (reference_model_id)"
                )
            reference = _model(session, reference_id, ModelKind.policy, "the reference")
            resolved["reference_model_id"] = reference.id
            judge = _any_model(session, resolved["judge_model_id"], "a judge model (judge_model_id)")
            what = f"evaluate {model.name} against {reference.name}, judged by {judge.name}"
        else:
            if resolved["reference_model_id"] is not None or resolved["judge_model_id"] is not None:
                raise RunError(
                    "a reward model is evaluated on held-out human judgments: leave "
                    "reference_model_id and judge_model_id empty"
                )
            what = f"evaluate {model.name} on held-out human judgments"
        item_kind, ids = _snapshot_ids(
            session, project=project, kind=kind, config=resolved | {"_evaluates": model.kind.value}
        )
    return item_kind, ids, what


def held_out_judgment_ids(session: Session, *, project_id: int, model_id: int) -> list[int]:
    """The project's human judgments on comparisons that the reward model never trained on:
    comparisons with no judgment in the snapshot of the run that produced the model (all of
    them when the model has no training run)."""
    model = session.get(ModelVersion, model_id)
    query = select(Judgment.id).where(
        Judgment.project_id == project_id, Judgment.source == JudgmentSource.human
    )
    if model is not None and model.run_id is not None:
        trained = (
            select(Judgment.comparison_id)
            .join(RunItem, RunItem.item_id == Judgment.id)
            .where(RunItem.run_id == model.run_id, RunItem.item_kind == SnapshotItemKind.judgment)
        )
        query = query.where(Judgment.comparison_id.not_in(trained))
    return list(session.scalars(query.order_by(Judgment.id)))


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


# --- judge and evaluate runs: their inputs and what they store ---------------------------------
#
# A judge run writes AI judgments (source ai, owned by the judge's own user, role judge); an
# evaluate run writes its figures into the evaluated version's metrics["evaluation"]. Neither
# registers a model version.

JUDGE_USER_PREFIX = "ai-judge:"
UNUSABLE_PASSWORD = "!"  # not an argon2 hash: no password ever verifies against it


@dataclass
class JudgeIdentity:
    """Who an AI judge is: its model version and, for an LM judge, the prompt it is given."""

    method: str  # "rm" (a reward model scores both sides) | "lm" (a prompted causal LM)
    model_version_id: int
    model_name: str
    username: str
    rubric: str | None = None
    rubric_sha256: str | None = None
    orders: str = "agree"  # LM judge: how the two orders' answers combine

    def describe(self) -> str:
        if self.method == "rm":
            return f"reward model {self.model_name}"
        averaged = ", orders averaged" if self.orders == "average" else ""
        return f"LM judge {self.model_name} (rubric {str(self.rubric_sha256)[:8]}{averaged})"


@dataclass
class AIInputs:
    """What the worker needs for a judge or evaluate run, detached from the database."""

    data: list[dict[str, Any]]
    model_ids: dict[str, int]  # role ("judge", "model", "reference") -> model version id
    context: dict[str, Any] = field(default_factory=dict)


def judge_rubric(project: Project, override: str | None) -> str:
    """The rubric an LM judge is prompted with: the run's override, the project's judge rubric,
    else the instructions its raters read."""
    for text in (override, project.judge_rubric, project.instructions):
        if text and text.strip():
            return text.strip()
    return "Prefer the response that is more helpful, correct and harmless."


def rubric_sha256(rubric: str, orders: str = "agree") -> str:
    """Hash of the judge's whole prompt template with the rubric filled in (and of the way the
    two orders combine, when not the default): a different hash is a different judge."""
    rule = "" if orders == "agree" else f"\x00orders={orders}"
    return hashlib.sha256(f"{JUDGE_TEMPLATE}\x00{rubric}{rule}".encode()).hexdigest()


def judge_username(model_name: str, rubric_hash: str | None = None) -> str:
    """`ai-judge:<model name>` (plus `:<rubric hash>` for an LM judge), at most 64 characters;
    a long model name is cut and made unique again with a hash of the whole name."""
    suffix = f":{rubric_hash[:8]}" if rubric_hash else ""
    name = f"{JUDGE_USER_PREFIX}{model_name}{suffix}"
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:8]
    keep = 64 - len(JUDGE_USER_PREFIX) - len(suffix) - len(digest) - 1
    return f"{JUDGE_USER_PREFIX}{model_name[:keep]}~{digest}{suffix}"


def judge_identity(
    session: Session,
    *,
    project: Project,
    model_id: int,
    rubric_override: str | None,
    orders: str = "agree",
) -> JudgeIdentity:
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise LookupError(f"model version {model_id} does not exist")
    if model.kind == ModelKind.reward:
        return JudgeIdentity("rm", model.id, model.name, judge_username(model.name))
    rubric = judge_rubric(project, rubric_override)
    digest = rubric_sha256(rubric, orders)
    return JudgeIdentity(
        "lm", model.id, model.name, judge_username(model.name, digest), rubric, digest, orders
    )


def _insert_ignoring_conflicts(session: Session, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on PostgreSQL and SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table).on_conflict_do_nothing()


def judge_user(session: Session, username: str) -> User:
    """The judge's user, created on first use (role judge, no usable password)."""
    session.execute(  # the other columns take their defaults
        _insert_ignoring_conflicts(session, User.__table__),
        [{"username": username, "password_hash": UNUSABLE_PASSWORD, "role": Role.judge.value}],
    )
    user = session.scalars(select(User).where(User.username == username)).one()
    if user.role != Role.judge:
        raise RunError(f"the user {username!r} exists and is not an AI judge")
    return user


def _pair_texts(session: Session, comparison_ids: list[int]) -> list[dict[str, Any]]:
    from sqlalchemy.orm import aliased

    a, b = aliased(Completion), aliased(Completion)
    rows = session.execute(
        select(Comparison.id, Prompt.messages, a.text, b.text)
        .join(Prompt, Prompt.id == Comparison.prompt_id)
        .join(a, a.id == Comparison.completion_a_id)
        .join(b, b.id == Comparison.completion_b_id)
        .where(Comparison.id.in_(comparison_ids))
        .order_by(Comparison.id)
    ).all()
    return [{"comparison_id": cid, "messages": m, "a": ta, "b": tb} for cid, m, ta, tb in rows]


def judge_inputs(session: Session, run: Run) -> AIInputs:
    """The comparisons a judge run labels: its snapshot, frozen when the run was created."""
    project = session.get(Project, run.project_id)
    assert project is not None
    identity = _run_judge_identity(session, project, run.config)
    ids = sorted(snapshot_ids(session, run.id))
    return AIInputs(
        data=_pair_texts(session, ids) if ids else [],
        model_ids={"judge": identity.model_version_id},
        context={"judge": identity.__dict__},
    )


def _run_judge_identity(session: Session, project: Project, config: dict[str, Any]) -> JudgeIdentity:
    return judge_identity(
        session,
        project=project,
        model_id=config["judge_model_id"],
        rubric_override=config["rubric"],
        orders=config.get("orders", "agree"),
    )


def _judge_selection(session: Session, project: Project, config: dict[str, Any]) -> list[int]:
    """The comparisons a judge run with this config labels (oldest first, up to `limit`)."""
    identity = _run_judge_identity(session, project, config)
    query = select(Comparison.id).where(Comparison.project_id == project.id)
    if config["comparisons"] == "unjudged":
        rater_id = session.scalar(select(User.id).where(User.username == identity.username))
        if rater_id is not None:
            done = select(Judgment.id).where(
                Judgment.comparison_id == Comparison.id, Judgment.rater_id == rater_id
            )
            query = query.where(~exists(done))
    elif config["comparisons"] == "human_labelled":
        human = select(Judgment.id).where(
            Judgment.comparison_id == Comparison.id, Judgment.source == JudgmentSource.human
        )
        query = query.where(exists(human))
    return list(session.scalars(query.order_by(Comparison.id).limit(config["limit"])))


def evaluate_inputs(session: Session, run: Run) -> AIInputs:
    """A reward model's held-out preference rows, or the prompts a policy is evaluated on."""
    from app.services.preferences import preference_rows

    project = session.get(Project, run.project_id)
    model = session.get(ModelVersion, run.config["model_id"])
    if project is None or model is None:
        raise LookupError("the project or the evaluated model version no longer exists")
    ids = snapshot_ids(session, run.id)
    context: dict[str, Any] = {"model": {"id": model.id, "name": model.name, "kind": model.kind.value}}
    if model.kind == ModelKind.reward:
        rows = preference_rows(
            session, project_id=project.id, judgment_ids=ids, aggregation="majority", label_source="human"
        )
        data = [
            {"comparison_id": row.comparison_id, "messages": row.messages, "chosen": row.chosen,
             "rejected": row.rejected, "chosen_id": row.chosen_side.completion_id,  # type: ignore[union-attr]
             "rejected_id": row.rejected_side.completion_id}  # type: ignore[union-attr]
            for row in rows
        ]  # fmt: skip
        return AIInputs(data=data, model_ids={"model": model.id}, context=context)
    reference = session.get(ModelVersion, run.config["reference_model_id"])
    if reference is None:
        raise LookupError(f"the reference model version {run.config['reference_model_id']} no longer exists")
    identity = judge_identity(
        session, project=project, model_id=run.config["judge_model_id"], rubric_override=run.config["rubric"]
    )
    context |= {
        "reference": {"id": reference.id, "name": reference.name},
        "judge": identity.__dict__,
        "judge_name": identity.describe(),
    }
    rows = session.execute(
        select(Prompt.id, Prompt.messages).where(Prompt.id.in_(ids)).order_by(Prompt.id)
    ).all()
    return AIInputs(
        data=[{"prompt_id": pid, "messages": m} for pid, m in rows],
        model_ids={"model": model.id, "reference": reference.id, "judge": identity.model_version_id},
        context=context,
    )


def _human_majority(session: Session, comparison_ids: list[int]) -> dict[int, str]:
    """The human majority (A or B; ties and split votes left out) of each comparison."""
    votes: dict[int, Counter[str]] = {}
    for start in range(0, len(comparison_ids), 1000):
        for cid, choice in session.execute(
            select(Judgment.comparison_id, Judgment.choice).where(
                Judgment.comparison_id.in_(comparison_ids[start : start + 1000]),
                Judgment.source == JudgmentSource.human,
            )
        ):
            votes.setdefault(cid, Counter())[str(choice)] += 1
    return {cid: "A" if c["A"] > c["B"] else "B" for cid, c in votes.items() if c["A"] != c["B"]}


def store_judgments(
    session: Session, *, run: Run, context: Mapping[str, Any], outcome: Mapping[str, Any]
) -> dict[str, Any]:
    """Write a judge run's verdicts as AI judgments; returns the run's summary.

    Idempotent: a (comparison, judge) pair that has a judgment keeps it (ON CONFLICT DO NOTHING),
    so a re-run labels only what is missing. AI judgments leave `Comparison.judgment_count`
    alone: it counts the human slots that rater assignment fills.
    """
    identity = JudgeIdentity(**context["judge"])
    verdicts: list[dict[str, Any]] = list(outcome["verdicts"])
    summary: dict[str, Any] = {
        "judge": identity.describe(),
        "judge_user": identity.username,
        "judged": len(verdicts),
        "stored": 0,
        "already_judged": 0,
    }
    if not verdicts:
        return summary
    user = judge_user(session, identity.username)
    provenance: dict[str, Any] = {
        "method": identity.method,
        "model_version_id": identity.model_version_id,
        "model_name": identity.model_name,
    }
    if identity.method == "lm":
        provenance["rubric_sha256"] = identity.rubric_sha256
        provenance["orders"] = identity.orders
    now = utcnow()
    stored = 0
    for start in range(0, len(verdicts), 1000):
        rows = [
            {
                "comparison_id": v["comparison_id"], "rater_id": user.id, "project_id": run.project_id,
                "assignment_id": None, "choice": v["choice"], "strength": v["strength"],
                "both_bad": False, "flags": [], "rationale": v.get("rationale", ""),
                "time_spent_ms": 0, "a_on_left": True, "source": JudgmentSource.ai.value,
                "run_id": run.id, "created_at": now, "provenance": {**provenance, **v["provenance"]},
            }
            for v in verdicts[start : start + 1000]
        ]  # fmt: skip
        inserted = session.execute(
            _insert_ignoring_conflicts(session, Judgment.__table__).returning(Judgment.__table__.c.id), rows
        )
        stored += len(inserted.all())
    counts = Counter(v["choice"] for v in verdicts)
    human = _human_majority(session, [v["comparison_id"] for v in verdicts])
    compared = [v for v in verdicts if v["comparison_id"] in human]
    summary |= {
        "stored": stored,
        "already_judged": len(verdicts) - stored,
        "choice_a": counts["A"],
        "choice_b": counts["B"],
        "ties": counts["tie"],
        "tie_rate": counts["tie"] / len(verdicts),
        "human_compared": len(compared),
    }
    if compared:
        summary["human_agreement"] = sum(v["choice"] == human[v["comparison_id"]] for v in compared) / len(
            compared
        )
    add_log(session, run.id, f"stored {stored} AI judgments by {identity.username}; "
                             f"{len(verdicts) - stored} were judged by it already")  # fmt: skip
    if identity.rubric is not None:
        add_log(
            session, run.id, f"the LM judge's rubric (sha256 {identity.rubric_sha256}):\n{identity.rubric}"
        )
    return summary


def record_evaluation(
    session: Session, *, run: Run, context: Mapping[str, Any], outcome: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge an evaluate run's figures into the evaluated version's metrics["evaluation"]
    (with the run and project they came from); returns the run's summary."""
    model = session.get(ModelVersion, context["model"]["id"])
    figures = {k: v for k, v in outcome.items() if not isinstance(v, list | dict)}
    evaluation = {**figures, "run_id": run.id, "project_id": run.project_id}
    if model is not None:
        metrics = dict(model.metrics or {})
        metrics["evaluation"] = {**dict(metrics.get("evaluation") or {}), **evaluation}
        model.metrics = metrics  # a new dict: JSON columns do not track changes in place
    add_log(session, run.id, "evaluation: " + ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))  # fmt: skip
    return figures
