"""What a run freezes when it is created: one selection per `Selects` value of the run kinds
table (app/run_kinds.py). A selection also checks the inputs only it can judge (the models a
judge or evaluate run names in its config) and says in a few words what the run will do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select
from sqlalchemy.orm import Session

from app.models import (
    Comparison,
    ComparisonKind,
    Demonstration,
    Judgment,
    JudgmentSource,
    ModelKind,
    ModelVersion,
    Project,
    Prompt,
    RankingJudgment,
    Role,
    RunItem,
    SnapshotItemKind,
    User,
)
from app.run_kinds import Selects
from app.services.preferences.rules import LABEL_SOURCES
from app.services.provenance import DEMONSTRATION_SOURCES, review_statuses
from app.services.rating.common import NOT_AN_EDIT
from app.services.runs.judges import run_judge_identity
from app.services.runs.records import RunError, any_model, model_of_kind
from app.services.triage.queue import SCORED, triage_candidates_query, triaged_label_ids


@dataclass
class Snapshot:
    item_kind: SnapshotItemKind
    ids: list[int]
    what: str | None = None  # for the run's first log line; the kind's name when None
    more: dict[SnapshotItemKind, list[int]] = field(default_factory=dict)  # items of other kinds beside


def _demonstrations(session: Session, project: Project, config: dict[str, Any]) -> Snapshot:
    """Accepted demonstrations of the config's sources (and pending ones with `include_pending`;
    rejected ones never)."""
    source = config.get("demonstration_source", "all")
    statuses = review_statuses(include_pending=bool(config.get("include_pending")))
    ids = session.scalars(
        select(Demonstration.id)
        .where(
            Demonstration.project_id == project.id,
            Demonstration.source.in_(DEMONSTRATION_SOURCES[source]),
            Demonstration.review_status.in_(statuses),
        )
        .order_by(Demonstration.id)
    ).all()
    if not ids:
        which = "" if source == "all" else f" of source {source}"
        reviewed = "accepted or pending" if config.get("include_pending") else "accepted"
        raise RunError(
            f"the project has no {reviewed} demonstrations{which} to fine-tune on; import or "
            "write some (written and improved ones train once a reviewer accepts them)"
        )
    return Snapshot(SnapshotItemKind.demonstration, list(ids), f"sft on {len(ids)} demonstrations ({source})")


def _judgments(session: Session, project: Project, config: dict[str, Any]) -> Snapshot:
    sources = LABEL_SOURCES[config["label_source"]]
    which: ColumnElement[bool] = Judgment.source.in_(sources)
    if config.get("ai_judge") and "ai" in sources:
        judge_id = session.scalar(
            select(User.id).where(User.username == config["ai_judge"], User.role == Role.judge)
        )
        if judge_id is None:
            raise RunError(f"ai_judge: no AI judge named {config['ai_judge']!r}")
        only_judge = and_(Judgment.source == JudgmentSource.ai, Judgment.rater_id == judge_id)
        which = or_(Judgment.source.in_([s for s in sources if s != "ai"]), only_judge)
    if config.get("triaged"):  # the labels of the pairs AI triage gave to its judge
        which = or_(which, Judgment.id.in_(triaged_label_ids(project.id)))
    ids = session.scalars(
        select(Judgment.id).where(Judgment.project_id == project.id, which).order_by(Judgment.id)
    ).all()
    # Rankings of the same label sources: their implied pairs train beside the pairs' labels.
    ranked = session.scalars(
        select(RankingJudgment.id)
        .where(RankingJudgment.project_id == project.id, RankingJudgment.source.in_(sources))
        .order_by(RankingJudgment.id)
    ).all()
    if not ids and not ranked:
        raise RunError(f"the project has no {config['label_source']} judgments or rankings yet")
    more = {SnapshotItemKind.ranking_judgment: list(ranked)} if ranked else {}
    return Snapshot(SnapshotItemKind.judgment, list(ids), more=more)


def _prompt_ids(session: Session, project: Project, newest: int | None = None) -> list[int]:
    query = select(Prompt.id).where(Prompt.project_id == project.id)
    if newest is not None:
        query = query.order_by(Prompt.id.desc()).limit(newest)
    ids = list(session.scalars(query.order_by(Prompt.id)).all())
    if not ids:
        raise RunError("the project has no prompts")
    return ids


def _prompts(session: Session, project: Project, config: dict[str, Any]) -> Snapshot:
    return Snapshot(SnapshotItemKind.prompt, _prompt_ids(session, project))


def _newest_prompts(session: Session, project: Project, config: dict[str, Any]) -> Snapshot:
    return Snapshot(SnapshotItemKind.prompt, _prompt_ids(session, project, config["num_prompts"]))


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


def _comparisons_to_judge(session: Session, project: Project, config: dict[str, Any]) -> Snapshot:
    """The comparisons a judge run labels (oldest first, up to `limit`), chosen now and frozen."""
    judge = any_model(session, config["judge_model_id"], "a judge model (judge_model_id)")
    has_pairs = session.scalar(select(exists().where(Comparison.project_id == project.id)))
    if not has_pairs:
        raise RunError("the project has no comparisons to judge")
    identity = run_judge_identity(session, project, config)
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
    ids = list(session.scalars(query.order_by(Comparison.id).limit(config["limit"])))
    what = f"judge with {judge.name} ({judge.kind.value}), {config['comparisons']}"
    return Snapshot(SnapshotItemKind.comparison, ids, what)


def open_comparisons_query(project: Project) -> Select[int]:
    """The project's regular pairs that still need human votes (judgments below the overlap),
    but for edit pairs and those AI triage gave to its judge or audits (they keep the priority
    triage gave them)."""
    return select(Comparison.id).where(
        Comparison.project_id == project.id,
        Comparison.kind == ComparisonKind.regular,
        Comparison.judgment_count < project.overlap + Comparison.extra_raters,
        SCORED,
        NOT_AN_EDIT,  # an improvement's edit pair is labelled by its edit
    )


def _open_comparisons(session: Session, project: Project, config: dict[str, Any]) -> Snapshot:
    """The open pairs a score run predicts (newest first, up to `limit`), chosen now and frozen."""
    query = open_comparisons_query(project).order_by(Comparison.id.desc()).limit(config["limit"])
    ids = sorted(session.scalars(query))
    if not ids:
        raise RunError("the project has no open pairs to score")
    return Snapshot(SnapshotItemKind.comparison, ids, "score the open pairs")


def _evaluation_set(session: Session, project: Project, config: dict[str, Any]) -> Snapshot:
    """A reward model's held-out human judgments, or the newest prompts a policy and its
    reference answer; an evaluated policy's reference is resolved into the config."""
    model = any_model(session, config["model_id"], "the model version to evaluate (model_id)")
    if model.kind == ModelKind.policy:
        reference_id = config["reference_model_id"] or model.parent_id
        if reference_id is None:
            raise RunError(
                f"the policy {model.name!r} has no parent: choose a reference (reference_model_id)"
            )
        reference = model_of_kind(session, reference_id, ModelKind.policy, "the reference")
        config["reference_model_id"] = reference.id
        judge = any_model(session, config["judge_model_id"], "a judge model (judge_model_id)")
        what = f"evaluate {model.name} against {reference.name}, judged by {judge.name}"
        return Snapshot(SnapshotItemKind.prompt, _prompt_ids(session, project, config["num_prompts"]), what)
    if config["reference_model_id"] is not None or config["judge_model_id"] is not None:
        raise RunError(
            "a reward model is evaluated on held-out human judgments: leave "
            "reference_model_id and judge_model_id empty"
        )
    ids = held_out_judgment_ids(session, project_id=project.id, model_id=model.id)
    if not ids:
        raise RunError(
            "no held-out human judgments: every human-judged comparison of the project was "
            "in the reward model's training snapshot"
        )
    return Snapshot(SnapshotItemKind.judgment, ids, f"evaluate {model.name} on held-out human judgments")


def _triage_candidates(session: Session, project: Project, config: dict[str, Any]) -> Snapshot:
    """The pairs a triage run judges (newest first, up to `limit`); the project's judge, margin and
    audit share are resolved into the config where it leaves them empty."""
    if config["judge_model_id"] is None:
        if project.triage_model_id is None:
            raise RunError(
                "the project has no triage judge: choose one on the project page, or a judge_model_id"
            )
        config["judge_model_id"] = project.triage_model_id
    if config["margin"] is None:
        config["margin"] = project.triage_margin
    if config["audit_share"] is None:
        config["audit_share"] = project.triage_audit_share
    judge = any_model(session, config["judge_model_id"], "a judge model (judge_model_id)")
    query = triage_candidates_query(project).order_by(Comparison.id.desc()).limit(config["limit"])
    ids = sorted(session.scalars(query))
    if not ids:
        raise RunError("no open pair to triage: every pair has votes, a rater, or a triage decision")
    what = (
        f"triage with {judge.name} ({judge.kind}), margin {config['margin']:g}, "
        f"audit share {config['audit_share']:g}"
    )
    return Snapshot(SnapshotItemKind.comparison, ids, what)


SELECTIONS: dict[Selects, Callable[[Session, Project, dict[str, Any]], Snapshot]] = {
    Selects.demonstrations: _demonstrations,
    Selects.judgments: _judgments,
    Selects.prompts: _prompts,
    Selects.newest_prompts: _newest_prompts,
    Selects.comparisons_to_judge: _comparisons_to_judge,
    Selects.evaluation_set: _evaluation_set,
    Selects.open_comparisons: _open_comparisons,
    Selects.triage_candidates: _triage_candidates,
}


def select_snapshot(session: Session, selects: Selects, project: Project, config: dict[str, Any]) -> Snapshot:
    return SELECTIONS[selects](session, project, config)
