"""A run's frozen snapshot as the plain rows its trainer reads: demonstrations, preference
pairs, prompts, the pairs a judge labels, an evaluation's data. Each builder takes the run and
its snapshot ids and returns the rows, with the context a judge or evaluation needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from app.config import get_settings
from app.models import (
    Comparison,
    Completion,
    Judgment,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Project,
    Prompt,
    Run,
    SnapshotItemKind,
)
from app.services.exporting.columns import Pseudonyms
from app.services.preferences import PreferenceRow, PreferenceStats, preference_rows
from app.services.provenance import WritingFigures, demonstration_rows
from app.services.runs.judges import JudgeIdentity, judge_identity, run_judge_identity
from app.services.runs.records import snapshot_ids


@dataclass
class Built:
    data: list[dict[str, Any]]
    context: dict[str, Any] = field(default_factory=dict)  # judge / evaluate: what storing needs back
    models: dict[str, int] = field(default_factory=dict)  # further versions the entry point loads, by role
    note: str = ""  # a line for the run's log: what the rows were counted from


# Below this share of labelled comparisons giving training pairs, a run's log warns.
LITTLE_DATA_SHARE = 0.5


def pairs_note(
    session: Session, judgment_ids: list[int], pairs: int, stats: PreferenceStats | None = None
) -> str:
    """'12 pairs from 20 judgments on 20 comparisons; 8 comparisons gave none (...)', and what
    the rankings gave."""
    comparisons = session.scalar(
        select(func.count(func.distinct(Judgment.comparison_id))).where(Judgment.id.in_(judgment_ids))
    )
    stats = stats or PreferenceStats()
    ranked = stats.implied_pairs
    note = f"{pairs} pairs from {len(judgment_ids)} judgments on {comparisons} comparisons"
    if stats.rankings_read:
        note += f" and {stats.rankings_read} rankings ({ranked} implied pairs)"
    dropped = (comparisons or 0) + ranked - pairs
    if dropped > 0 and stats.rankings_read == 0:
        note += f"; {dropped} comparisons gave no pair (ties, both-bad or split votes, by the rules)"
    elif dropped > 0:
        note += f"; {dropped} comparisons or implied pairs gave no pair (ties, both-bad or split votes)"
    if stats.ties_kept:
        note += f"; {stats.ties_kept} of the pairs are ties, trained on by the tie rule"
    labelled = (comparisons or 0) + ranked
    if labelled and pairs < LITTLE_DATA_SHARE * labelled:
        note += (
            f". Warning: only {pairs} of {labelled} labelled comparisons ({pairs / labelled:.0%}) became "
            "training pairs; ties and drops leave little data (the project's tie rate, or the rules "
            "chosen: aggregation, include_both_bad, min_agreement)"
        )
    return note


def demonstrations(session: Session, run: Run, ids: list[int]) -> Built:
    """The snapshot's demonstrations, each with its provenance (app/services/provenance.py:
    source, pseudonymous author, review, what an improved one was edited from)."""
    rows = demonstration_rows(session, ids, Pseudonyms(get_settings().secret_key))
    figures = WritingFigures()
    for row in rows:
        figures.add(row)
    return Built(rows, note=figures.summary())


def group_of(row: PreferenceRow, per_rater: bool) -> str | None:
    """The batch group of a row implied by a ranking: the ranking (one rater's ranking for
    per_rater rows), so that its pairs can train as one batch element; None for a pair's row."""
    if row.ranking_id is None:
        return None
    return f"ranking:{row.ranking_id}" + (f":rater:{row.votes_used[0].rater_id}" if per_rater else "")


def preference_pairs(session: Session, run: Run, ids: list[int]) -> Built:
    """(chosen, rejected) pairs from the snapshot's judgments and rankings (expanded into their
    implied pairs) by the config's aggregation rules."""
    ranked = snapshot_ids(session, run.id, SnapshotItemKind.ranking_judgment)
    stats = PreferenceStats()
    rows = preference_rows(
        session,
        project_id=run.project_id,
        judgment_ids=ids,
        ranking_judgment_ids=ranked,
        aggregation=run.config["aggregation"],
        # The snapshot's ids say exactly which labels: triaged AI labels pass beside any source.
        label_source="all" if run.config.get("triaged") else run.config["label_source"],
        include_both_bad=run.config["include_both_bad"],
        min_agreement=run.config["min_agreement"],
        # A reward run's tie_rule half or davidson trains on ties (runs before it had none: drop).
        keep_ties=run.config.get("tie_rule", "drop") != "drop",
        stats=stats,
    )
    per_rater = run.config["aggregation"] == "per_rater"
    data = [
        {"prompt_id": row.prompt_id, "messages": row.messages, "chosen": row.chosen,
         "rejected": row.rejected, "margin": row.margin, "group": group_of(row, per_rater),
         "tie": row.tie}
        for row in rows
    ]  # fmt: skip
    if not data:
        raise ValueError(
            "no preference pairs after aggregation (ties, both-bad and split votes are "
            "dropped by the chosen rules)"
        )
    return Built(data, note=pairs_note(session, ids, len(data), stats))


def _prompt_rows(session: Session, ids: list[int]) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Prompt.id, Prompt.messages).where(Prompt.id.in_(ids)).order_by(Prompt.id)
    ).all()
    return [{"prompt_id": pid, "messages": m} for pid, m in rows]


def prompts(session: Session, run: Run, ids: list[int]) -> Built:
    """The prompts a generate run answers, and its project's rank_k (the ranking strategy's K)."""
    return Built(_prompt_rows(session, ids), {"rank_k": _project(session, run).rank_k})


def _project(session: Session, run: Run) -> Project:
    project = session.get(Project, run.project_id)
    assert project is not None
    return project


def _pair_texts(session: Session, ids: list[int]) -> list[dict[str, Any]]:
    """Comparisons as `{"comparison_id", "messages", "a", "b"}`, in id order."""
    a, b = aliased(Completion), aliased(Completion)
    rows = session.execute(
        select(Comparison.id, Prompt.messages, a.text, b.text)
        .join(Prompt, Prompt.id == Comparison.prompt_id)
        .join(a, a.id == Comparison.completion_a_id)
        .join(b, b.id == Comparison.completion_b_id)
        .where(Comparison.id.in_(ids))
        .order_by(Comparison.id)
    ).all()
    return [{"comparison_id": cid, "messages": m, "a": ta, "b": tb} for cid, m, ta, tb in rows]


def judge_pairs(session: Session, run: Run, ids: list[int]) -> Built:
    """The comparisons a judge run labels (its snapshot) as texts, and who the judge is."""
    identity = run_judge_identity(session, _project(session, run), run.config)
    if not ids:
        return Built([], {"judge": identity.__dict__})
    return Built(_pair_texts(session, ids), {"judge": identity.__dict__})


def triage_identity(session: Session, run: Run) -> JudgeIdentity:
    """A triage run's judge: its model, the project's rubric, asked in both orders (agree)."""
    return judge_identity(
        session, project=_project(session, run), model_id=run.config["judge_model_id"], rubric_override=None
    )


def triage_pairs(session: Session, run: Run, ids: list[int]) -> Built:
    """The pairs a triage run judges (its snapshot) as texts, and who the judge is."""
    identity = triage_identity(session, run)
    return Built(_pair_texts(session, ids) if ids else [], {"judge": identity.__dict__})


def ensemble_members(session: Session, run: Run) -> list[ModelVersion]:
    """The reward versions that score a run's pairs: its own, then the project's newest earlier
    ones whose files are still there, up to `ensemble` in all (newest first)."""
    chosen = session.get(ModelVersion, run.reward_model_id)
    if chosen is None:
        raise LookupError("the run's reward model version no longer exists")
    earlier = session.scalars(
        select(ModelVersion)
        .where(
            ModelVersion.project_id == run.project_id,
            ModelVersion.kind == ModelKind.reward,
            ModelVersion.status == ModelStatus.ready,
            ModelVersion.pruned_at.is_(None),
            ModelVersion.id < chosen.id,
        )
        .order_by(ModelVersion.id.desc())
        .limit(run.config["ensemble"] - 1)
    ).all()
    return [chosen, *earlier]


def score_pairs(session: Session, run: Run, ids: list[int]) -> Built:
    """The open pairs a score run predicts (its snapshot) as texts, and the ensemble's versions."""
    members = ensemble_members(session, run)
    context = {"members": [{"id": m.id, "name": m.name} for m in members]}
    note = f"{len(ids)} open pairs, scored by {', '.join(m.name for m in members)}"
    if len(members) < run.config["ensemble"]:
        note += f" (the project has {len(members)} of the {run.config['ensemble']} reward versions asked for)"
    models = {f"member{index}": m.id for index, m in enumerate(members)}
    return Built(_pair_texts(session, ids), context, models=models, note=note)


def evaluation_data(session: Session, run: Run, ids: list[int]) -> Built:
    """A reward model's held-out preference rows, or the prompts a policy is evaluated on (with
    its reference and judge)."""
    project = session.get(Project, run.project_id)
    model = session.get(ModelVersion, run.config["model_id"])
    if project is None or model is None:
        raise LookupError("the project or the evaluated model version no longer exists")
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
        return Built(data, context, note="held-out " + pairs_note(session, ids, len(data)))
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
    return Built(_prompt_rows(session, ids), context)
