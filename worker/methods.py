"""The run kinds, torch side: for each kind, how its data is built from the snapshot
(worker/data.py), its entry point (a trainer in worker/training/<method>.py), and, for a kind
that registers no model, how its result is stored. app/run_kinds.py holds the rest of each
kind's declaration; the two tables have the same keys.

Entry points receive a `Work` (plain data, no database) and a `Reporter`. A kind that produces
a model (`produces` in app/run_kinds.py) returns a `TrainResult`, which the runner publishes
and app/services/registry.py registers; it runs through worker.training.launch, in one or
several processes. Every other kind runs in the worker's process and returns an outcome that
its `store` writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.models import Run, RunKind
from app.services.runs import results, scores
from worker import data
from worker.data import Built
from worker.training.base import ModelRef, Reporter, TrainResult


@dataclass(kw_only=True)
class Work:
    """What an entry point is given: the run's kind and config, its data, its models."""

    kind: RunKind
    config: dict[str, Any]
    data: list[dict[str, Any]] = field(default_factory=list)
    base: ModelRef | None = None  # the version it starts from
    models: dict[str, ModelRef] = field(default_factory=dict)  # others by role (app/run_kinds.py)
    context: dict[str, Any] = field(default_factory=dict)  # judge / evaluate: from the builder
    output_dir: Path | None = None  # trainers: where the finished model directory goes
    device: str | None = None  # trainers in a launched process: this rank's device


@dataclass(frozen=True)
class Method:
    build: Callable[[Session, Run, list[int]], Built]
    run: Callable[[Work, Reporter], Any]
    # Kinds that register no model: write the outcome, return the run's summary.
    store: Callable[[Session, Run, Work, Any], Mapping[str, Any]] | None = None


# --- entry points: each imports its trainer (and torch) only when called ---------------------


def _sft(work: Work, reporter: Reporter) -> TrainResult:
    from app.schemas.training import SFTConfig
    from worker.training.sft import train_sft

    assert work.base is not None and work.output_dir is not None
    return train_sft(config=SFTConfig(**work.config), base=work.base, demos=work.data,
                     output_dir=work.output_dir, reporter=reporter)  # fmt: skip


def _reward(work: Work, reporter: Reporter) -> TrainResult:
    from app.schemas.training import RewardConfig
    from worker.training.reward import train_reward

    assert work.base is not None and work.output_dir is not None
    return train_reward(config=RewardConfig(**work.config), base=work.base, pairs=work.data,
                        output_dir=work.output_dir, reporter=reporter)  # fmt: skip


def _dpo(work: Work, reporter: Reporter) -> TrainResult:
    from app.schemas.training import DPOConfig
    from worker.training.dpo import train_dpo

    assert work.base is not None and work.output_dir is not None
    return train_dpo(config=DPOConfig(**work.config), base=work.base, pairs=work.data,
                     output_dir=work.output_dir, reporter=reporter)  # fmt: skip


def _ppo(work: Work, reporter: Reporter) -> TrainResult:
    from app.schemas.training import PPOConfig
    from worker.training.ppo import train_ppo

    assert work.base is not None and work.output_dir is not None
    return train_ppo(config=PPOConfig(**work.config), policy=work.base, reward=work.models["reward"],
                     prompts=[row["messages"] for row in work.data], output_dir=work.output_dir,
                     reporter=reporter, device=work.device)  # fmt: skip


def _generate(work: Work, reporter: Reporter) -> dict[str, Any]:
    from app.schemas.training import GenerateConfig
    from worker.training.generate import generate_completions, sampling_settings

    config = GenerateConfig(**work.config)
    prompts = [row["messages"] for row in work.data]
    assert work.base is not None
    if config.strategy == "ranking":
        # K completions per prompt: the policy's, or shared with the versus version (slot 1).
        k = config.rank_k or int(work.context["rank_k"])
        versions = [work.base] + ([work.models["versus"]] if config.versus_model_id is not None else [])
        counts = [k // len(versions) + (slot < k % len(versions)) for slot in range(len(versions))]
        samples = [
            generate_completions(
                policy=version, prompts=prompts, config=config, reporter=reporter, num_samples=count
            )
            for version, count in zip(versions, counts, strict=True)
        ]
        rankings = [
            [[text, slot] for slot, texts in enumerate(per_version) for text in texts]
            for per_version in zip(*samples, strict=True)
        ]
        return {"rankings": rankings, "sampling": sampling_settings(config)}
    if config.strategy == "two_samples" and config.oversampled:
        from worker.training.generate import oversample

        scorer = work.models.get("scorer")
        return oversample(policy=work.base, scorer=scorer, prompts=prompts, config=config, reporter=reporter)
    if config.strategy == "two_samples":
        texts = generate_completions(
            policy=work.base, prompts=prompts, config=config, reporter=reporter, num_samples=2
        )
        pairs = [(t[0], t[1]) for t in texts]
    else:
        ours = generate_completions(
            policy=work.base, prompts=prompts, config=config, reporter=reporter, num_samples=1
        )
        theirs = generate_completions(
            policy=work.models["versus"], prompts=prompts, config=config, reporter=reporter, num_samples=1
        )
        pairs = [(a[0], b[0]) for a, b in zip(ours, theirs, strict=True)]
    return {"pairs": pairs, "sampling": sampling_settings(config)}


def _judge(work: Work, reporter: Reporter) -> dict[str, Any]:
    from app.schemas.training import JudgeConfig
    from worker.training.judge import run_judge

    return run_judge(config=JudgeConfig(**work.config), judge=work.models["judge"],
                     identity=work.context["judge"], data=work.data, reporter=reporter)  # fmt: skip


def _evaluate(work: Work, reporter: Reporter) -> dict[str, Any]:
    from app.schemas.training import EvaluateConfig
    from worker.training.evaluate import run_evaluate

    return run_evaluate(config=EvaluateConfig(**work.config), models=work.models, context=work.context,
                        data=work.data, reporter=reporter)  # fmt: skip


def _triage(work: Work, reporter: Reporter) -> dict[str, Any]:
    from app.schemas.training import JudgeConfig, TriageConfig
    from worker.training.judge import run_judge

    triage = TriageConfig(**work.config)
    config = JudgeConfig(judge_model_id=triage.judge_model_id, limit=triage.limit, orders="agree",
                         strong_margin=triage.strong_margin, max_length=triage.max_length,
                         batch_size=triage.batch_size, bf16=triage.bf16)  # fmt: skip
    return run_judge(config=config, judge=work.models["judge"], identity=work.context["judge"],
                     data=work.data, reporter=reporter)  # fmt: skip


def _score(work: Work, reporter: Reporter) -> dict[str, Any]:
    from app.schemas.training import ScoreConfig
    from worker.training.score import run_score

    members = [work.models[f"member{index}"] for index in range(len(work.context["members"]))]
    return run_score(config=ScoreConfig(**work.config), members=members, data=work.data, reporter=reporter)


# --- how a kind without a model stores its outcome --------------------------------------------


def _store_generated(session: Session, run: Run, work: Work, outcome: Any) -> Mapping[str, Any]:
    return results.store_generated(session, run=run, prompts=work.data, outcome=outcome)


def _store_judgments(session: Session, run: Run, work: Work, outcome: Any) -> Mapping[str, Any]:
    return results.store_judgments(session, run=run, context=work.context, outcome=outcome)


def _record_evaluation(session: Session, run: Run, work: Work, outcome: Any) -> Mapping[str, Any]:
    return results.record_evaluation(session, run=run, context=work.context, outcome=outcome)


def _store_triage(session: Session, run: Run, work: Work, outcome: Any) -> Mapping[str, Any]:
    from app.services.triage.store import store_triage

    return store_triage(session, run=run, context=work.context, outcome=outcome)


def _store_scores(session: Session, run: Run, work: Work, outcome: Any) -> Mapping[str, Any]:
    return scores.store_scores(session, run=run, context=work.context, outcome=outcome)


METHODS: dict[RunKind, Method] = {
    RunKind.sft: Method(data.demonstrations, _sft),
    RunKind.reward: Method(data.preference_pairs, _reward),
    RunKind.dpo: Method(data.preference_pairs, _dpo),
    RunKind.ppo: Method(data.prompts, _ppo),
    RunKind.generate: Method(data.prompts, _generate, _store_generated),
    RunKind.judge: Method(data.judge_pairs, _judge, _store_judgments),
    RunKind.evaluate: Method(data.evaluation_data, _evaluate, _record_evaluation),
    RunKind.score: Method(data.score_pairs, _score, _store_scores),
    RunKind.triage: Method(data.triage_pairs, _triage, _store_triage),
}
