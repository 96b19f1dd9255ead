"""What the runs that register no model store when they succeed: a generate run's new pairs (or
rankings) in the rating queue, a judge run's AI judgments, an evaluate run's figures on the
evaluated version. Each returns the run's summary; the worker then marks the run succeeded in
the same transaction.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import insert_ignoring_conflicts
from app.models import Comparison, Completion, Judgment, JudgmentSource, ModelVersion, Ranking, Run
from app.models.types import utcnow
from app.services.content import text_hash
from app.services.runs.judges import JudgeIdentity, judge_user
from app.services.runs.records import add_log


def store_generated(
    session: Session, *, run: Run, prompts: Sequence[Mapping[str, Any]], outcome: Mapping[str, Any]
) -> dict[str, Any]:
    """A generate run's new completions (with provenance) and comparisons in the rating queue.

    `outcome["pairs"]` holds (text a, text b) for each of `prompts` (rows with a prompt_id), in
    order: two samples of the run's policy, or its answer and the `versus` version's. Empty and
    identical pairs are skipped; two samples are put in random order."""
    if run.config.get("strategy") == "ranking":
        return _store_generated_rankings(session, run=run, prompts=prompts, outcome=outcome)
    if "oversampled" in outcome:
        return _store_oversampled(session, run=run, prompts=prompts, outcome=outcome)
    two_samples = run.config.get("strategy") == "two_samples"
    model_a = run.base_model_id
    model_b = run.base_model_id if two_samples else run.config["versus_model_id"]
    created = skipped = 0
    rng = random.Random(run.config.get("seed", 0))
    for row, (text_a, text_b) in zip(prompts, outcome["pairs"], strict=True):
        if not text_a.strip() or not text_b.strip() or text_a == text_b:
            skipped += 1
            continue
        completions = [
            Completion(prompt_id=row["prompt_id"], text=text, content_hash=text_hash(text),
                       model_version_id=model_id, sampling=outcome["sampling"])
            for text, model_id in ((text_a, model_a), (text_b, model_b))
        ]  # fmt: skip
        session.add_all(completions)
        session.flush()
        if two_samples and rng.random() < 0.5:
            completions.reverse()
        session.add(
            Comparison(project_id=run.project_id, prompt_id=row["prompt_id"],
                       completion_a_id=completions[0].id, completion_b_id=completions[1].id)
        )  # fmt: skip
        created += 1
    return {"comparisons_created": created, "pairs_skipped": skipped}


def _store_oversampled(
    session: Session, *, run: Run, prompts: Sequence[Mapping[str, Any]], outcome: Mapping[str, Any]
) -> dict[str, Any]:
    """An oversampled generate run (worker/training/generate.py, `oversample`): every distinct
    non-empty completion of each prompt is stored (those not in a pair are kept for later runs),
    and a comparison for each picked pair, in the order picked. Pairs a reward model picked carry
    its predicted preference, uncertainty and priority, as if a score run had just scored them,
    so that uncertainty selection serves them at once."""
    now = utcnow()
    created = stored = skipped = 0
    for row, entry in zip(prompts, outcome["oversampled"], strict=True):
        completions = [
            Completion(prompt_id=row["prompt_id"], text=text, content_hash=text_hash(text),
                       model_version_id=run.base_model_id, sampling=outcome["sampling"])
            for text in entry["texts"]
        ]  # fmt: skip
        session.add_all(completions)
        session.flush()
        stored += len(completions)
        if not entry["pairs"]:
            skipped += 1
        for pair in entry["pairs"]:
            scores: dict[str, Any] = {}
            if pair.get("uncertainty") is not None:
                scores = {"predicted_preference": pair["predicted_preference"], "scored_at": now,
                          "uncertainty": pair["uncertainty"], "priority": pair["priority"]}  # fmt: skip
            session.add(
                Comparison(project_id=run.project_id, prompt_id=row["prompt_id"],
                           completion_a_id=completions[pair["a"]].id,
                           completion_b_id=completions[pair["b"]].id, **scores)
            )  # fmt: skip
            created += 1
    return {
        "comparisons_created": created,
        "completions_stored": stored,
        "prompts_without_pair": skipped,
        "pairs_picked_by": outcome["picked_by"],
    }


def _store_generated_rankings(
    session: Session, *, run: Run, prompts: Sequence[Mapping[str, Any]], outcome: Mapping[str, Any]
) -> dict[str, Any]:
    """A ranking generate run's completions and rankings: `outcome["rankings"]` holds, for each
    of `prompts`, K `[text, slot]` (slot 0: the run's policy, 1: the versus version). A prompt
    whose K texts are not all distinct and non-empty gets no ranking (a ranking of fewer would
    break the project's K); the completions are stored in a random order (each rater sees them
    in an order of their own anyway)."""
    versions = [run.base_model_id, run.config.get("versus_model_id")]
    rng = random.Random(run.config.get("seed", 0))
    created = skipped = 0
    for row, samples in zip(prompts, outcome["rankings"], strict=True):
        texts = [text for text, _ in samples]
        if any(not text.strip() for text in texts) or len(set(texts)) < len(texts):
            skipped += 1
            continue
        completions = [
            Completion(prompt_id=row["prompt_id"], text=text, content_hash=text_hash(text),
                       model_version_id=versions[slot], sampling=outcome["sampling"])
            for text, slot in samples
        ]  # fmt: skip
        rng.shuffle(completions)
        session.add_all(completions)
        session.flush()
        session.add(
            Ranking(project_id=run.project_id, prompt_id=row["prompt_id"],
                    completion_ids=[completion.id for completion in completions])
        )  # fmt: skip
        created += 1
    return {"rankings_created": created, "rankings_skipped": skipped}


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
            insert_ignoring_conflicts(session, Judgment.__table__).returning(Judgment.__table__.c.id), rows
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
