"""Evaluate a model version: a reward model on held-out human judgments, or a policy's win rate
against a reference, judged by a reward model or an LM judge.

Reward model (`evaluate_reward_model`); data: the held-out majority rows
`{"comparison_id", "messages", "chosen", "rejected", "chosen_id", "rejected_id"}` (human
judgments on comparisons the model never trained on, chosen by app/services/runs/snapshots.py):
1. Seed torch first: a reward version made from a causal LM gets a freshly initialised score head.
2. Score both sides of every row as the reward trainer saw them (judge.RewardJudge).
3. accuracy = share of rows with score(chosen) > score(rejected), an exact tie counting a half;
   also the mean score margin.
4. Length bias: over the distinct evaluated completions, the Pearson and Spearman correlation of
   the score with the completion's length in characters and in tokens (of the response alone).
   None where it is undefined (fewer than 3 completions, or no spread).

Policy (`evaluate_policy`); data: the held-out prompts `{"prompt_id", "messages"}`:
5. Sample one completion per prompt from the policy and one from the reference, with the same
   settings and the same seed (generate.py; equal models give equal texts).
6. Judge each (policy, reference) pair with the judge: the reward model (higher score wins) or
   the LM judge asked in both orders (judge.py). Outcome 1 win, 0.5 tie, 0 loss.
7. win_rate = mean outcome (a tie counts a half), tie_rate = share of ties, lc_win_rate = the
   length-controlled win rate (app.services.evaluation.length_controlled_win_rate on the
   character length differences), mean_length / reference_mean_length in characters.

Progress goes to the reporter after every batch (generation, scoring, judging as one count), and
a cancel is honoured at the next batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from app.schemas.training import EvaluateConfig, GenerateConfig
from app.services.evaluation import length_controlled_win_rate
from worker.training.base import Cancelled, ModelRef, Reporter
from worker.training.generate import generate_completions
from worker.training.judge import RewardJudge, make_judge, resolve_device


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r; None with fewer than 3 points or no spread in either variable."""
    n = len(xs)
    if n < 3 or n != len(ys):
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, equal values sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's r of the ranks (ties averaged)."""
    if len(xs) < 3 or len(xs) != len(ys):
        return None
    return pearson(ranks(xs), ranks(ys))


class _Progress:
    """One step count across the phases of an evaluation."""

    def __init__(self, reporter: Reporter, total: int) -> None:
        self.reporter, self.total, self.done = reporter, total, 0

    def check(self) -> None:
        if self.reporter.should_stop():
            raise Cancelled()

    def step(self, metrics: dict[str, float]) -> None:
        self.done += 1
        self.reporter.step(self.done, self.total, metrics)


class _Shifted:
    """A reporter for a sub-phase (generation): its steps continue the run's count."""

    def __init__(self, progress: _Progress) -> None:
        self.progress = progress

    def step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        self.progress.step(metrics)

    def log(self, message: str) -> None:
        self.progress.reporter.log(message)

    def phase(self, name: str) -> None:
        self.progress.reporter.phase(name)

    def should_stop(self) -> bool:
        return self.progress.reporter.should_stop()


def evaluate_reward_model(
    *,
    config: EvaluateConfig,
    model: ModelRef,
    rows: list[dict[str, Any]],
    reporter: Reporter,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Accuracy and length bias of a reward model on held-out preference rows (1-4)."""
    if not rows:
        raise ValueError("no held-out preference rows (ties and split votes give none)")
    torch.manual_seed(config.seed)  # (1)
    judge = RewardJudge(model, max_length=config.max_length, batch_size=config.batch_size,
                        bf16=config.bf16, device=resolve_device(device))  # fmt: skip
    size = config.batch_size
    progress = _Progress(reporter, (len(rows) + size - 1) // size)
    reporter.log(f"evaluate: scoring {len(rows)} held-out pairs")
    chosen: list[float] = []
    rejected: list[float] = []
    for start in range(0, len(rows), size):
        progress.check()
        batch = rows[start : start + size]
        messages = [r["messages"] for r in batch]
        chosen += judge.scores(messages, [r["chosen"] for r in batch])  # (2)
        rejected += judge.scores(messages, [r["rejected"] for r in batch])
        progress.step({"eval/accuracy": _accuracy(chosen, rejected), "eval/pairs": float(len(chosen))})
    # (4) each completion once, with its score and its length in characters and tokens
    completions: dict[int, tuple[float, int, int]] = {}
    tokenizer = judge.tokenizer
    for row, sc, sr in zip(rows, chosen, rejected, strict=True):
        for key, text, score in (("chosen_id", row["chosen"], sc), ("rejected_id", row["rejected"], sr)):
            if row[key] not in completions:
                n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
                completions[row[key]] = (score, len(text), n_tokens)
    scores = [c[0] for c in completions.values()]
    chars = [float(c[1]) for c in completions.values()]
    tokens = [float(c[2]) for c in completions.values()]
    return {
        "accuracy": _accuracy(chosen, rejected),  # (3)
        "n": len(rows),
        "mean_margin": sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(rows),
        "completions": len(completions),
        "length_pearson_chars": pearson(scores, chars),
        "length_spearman_chars": spearman(scores, chars),
        "length_pearson_tokens": pearson(scores, tokens),
        "length_spearman_tokens": spearman(scores, tokens),
    }


def _accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    hits = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True))
    return hits / len(chosen)


def evaluate_policy(
    *,
    config: EvaluateConfig,
    policy: ModelRef,
    reference: ModelRef,
    judge: ModelRef,
    identity: dict[str, Any],
    prompts: list[list[dict[str, str]]],
    reporter: Reporter,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """The policy's win rate against the reference on `prompts`, as the judge sees it (5-7)."""
    if not prompts:
        raise ValueError("no prompts to evaluate on")
    device = resolve_device(device)
    sampling = GenerateConfig(num_prompts=len(prompts), max_new_tokens=config.max_new_tokens,
                              temperature=config.temperature, top_p=config.top_p,
                              batch_size=config.batch_size, seed=config.seed)  # fmt: skip
    size = config.batch_size
    batches = (len(prompts) + size - 1) // size
    progress = _Progress(reporter, 3 * batches)
    shifted = _Shifted(progress)
    # (5) the same settings and seed for both
    ours = [s[0] for s in generate_completions(policy=policy, prompts=prompts, config=sampling,
                                               reporter=shifted, num_samples=1, device=device)]  # fmt: skip
    theirs = [s[0] for s in generate_completions(policy=reference, prompts=prompts, config=sampling,
                                                 reporter=shifted, num_samples=1, device=device)]  # fmt: skip
    progress.check()
    model = make_judge(judge, identity, max_length=config.max_length, batch_size=size,
                       bf16=config.bf16, device=device)  # fmt: skip
    reporter.log(
        f"evaluate: judging {len(prompts)} pairs with {identity['model_name']} ({identity['method']})"
    )
    outcomes: list[float] = []
    for start in range(0, len(prompts), size):
        progress.check()
        items = [(prompts[i], ours[i], theirs[i]) for i in range(start, min(start + size, len(prompts)))]
        for verdict in model.judge(items):  # (6)
            outcomes.append({"A": 1.0, "B": 0.0, "tie": 0.5}[verdict["choice"]])
        progress.step({"eval/win_rate": sum(outcomes) / len(outcomes), "eval/pairs": float(len(outcomes))})
    deltas = [float(len(a) - len(b)) for a, b in zip(ours, theirs, strict=True)]
    n = len(outcomes)
    return {  # (7)
        "win_rate": sum(outcomes) / n,
        "tie_rate": sum(o == 0.5 for o in outcomes) / n,
        "lc_win_rate": length_controlled_win_rate(outcomes, deltas),
        "mean_length": sum(len(t) for t in ours) / n,
        "reference_mean_length": sum(len(t) for t in theirs) / n,
        "n": n,
    }


def run_evaluate(
    *,
    config: EvaluateConfig,
    models: dict[str, ModelRef],
    context: dict[str, Any],
    data: list[dict[str, Any]],
    reporter: Reporter,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """The runner's entry: a reward model or a policy, by the evaluated version's kind."""
    evaluated = context["model"]
    if evaluated["kind"] == "reward":
        return {"model": evaluated["name"]} | evaluate_reward_model(
            config=config, model=models["model"], rows=data, reporter=reporter, device=device
        )
    identity = context["judge"]
    figures = evaluate_policy(
        config=config, policy=models["model"], reference=models["reference"], judge=models["judge"],
        identity=identity, prompts=[row["messages"] for row in data], reporter=reporter, device=device,
    )  # fmt: skip
    return {
        "model": evaluated["name"],
        "reference": context["reference"]["name"],
        "judge": context["judge_name"],
    } | figures
