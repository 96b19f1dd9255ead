"""Score open pairs for uncertainty selection: each member of an ensemble of reward model
versions scores both sides of a pair, exactly as the reward-model judge does (judge.py,
`RewardJudge`: the chat template, read at the last real token, dropout off).

For a pair (a, b), member i gives p_i = sigmoid(r_i(a) - r_i(b)), its Bradley-Terry probability
that a is preferred. The prediction is the ensemble's mean p. The uncertainty, by `measure`:

* margin: 1 - |2p - 1|, 1 when the ensemble's mean is a coin toss, 0 when it is certain
  (smallest margin first; with one member this is plain uncertainty sampling);
* disagreement: the standard deviation of the p_i (population), the members' disagreement
  (query by committee; the ensemble is the project's latest reward versions).

The priority the uncertainty strategy serves first is the uncertainty itself. Data:
`{"comparison_id", "messages", "a", "b"}` per pair; result: `{"scores": [{"comparison_id",
"predicted_preference", "uncertainty", "priority", "members": [p_i, ...]}]}` in data order.
Pairs go in batches of `batch_size`; progress after each batch, a cancel before the next.

An oversampled generate run (generate.py, `oversample`) reuses the same reading:
`completion_rewards` scores each of a prompt's N completions once, `informative_pairs` picks the
pairs with the smallest reward margin, and `pair_score` gives them a one-member score run's
prediction, uncertainty and priority.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.schemas.training import ScoreConfig
from app.services.runs.scores import combine, sigmoid
from worker.training.base import Cancelled, ModelRef, Reporter


def run_score(
    *,
    config: ScoreConfig,
    members: Sequence[ModelRef],
    data: list[dict[str, Any]],
    reporter: Reporter,
    device: str | None = None,
) -> dict[str, Any]:
    """Score every pair of `data` with every member; returns `{"scores": [...]}`."""
    from worker.training.judge import RewardJudge

    if reporter.should_stop():
        raise Cancelled()
    if not data:
        reporter.log("score: no open pairs to score")
        return {"scores": []}
    size = config.batch_size
    batches = (len(data) + size - 1) // size
    total = batches * len(members)
    # probabilities[j][i]: member i's probability that pair j's a is preferred.
    probabilities: list[list[float]] = [[] for _ in data]
    for index, ref in enumerate(members):
        reporter.phase("loading the model")
        judge = RewardJudge(
            ref, max_length=config.max_length, batch_size=size, bf16=config.bf16, device=device
        )
        for batch in range(batches):
            if reporter.should_stop():
                raise Cancelled()
            rows = data[batch * size : (batch + 1) * size]
            messages = [r["messages"] for r in rows]
            first = judge.scores(messages, [r["a"] for r in rows])
            second = judge.scores(messages, [r["b"] for r in rows])
            for offset, (sa, sb) in enumerate(zip(first, second, strict=True)):
                probabilities[batch * size + offset].append(sigmoid(sa - sb))
            reporter.step(
                index * batches + batch + 1, total, {"score/pairs": float(min((batch + 1) * size, len(data)))}
            )
        del judge
    scores = []
    for row, ps in zip(data, probabilities, strict=True):
        prediction, uncertainty = combine(ps, config.measure)
        scores.append({"comparison_id": row["comparison_id"], "predicted_preference": prediction,
                       "uncertainty": uncertainty, "priority": uncertainty, "members": ps})  # fmt: skip
    mean = sum(s["uncertainty"] for s in scores) / len(scores)
    reporter.log(
        f"score: {len(scores)} pairs by {len(members)} reward version(s); mean {config.measure} {mean:.3f}"
    )
    return {"scores": scores}


def completion_rewards(
    *,
    reward: ModelRef,
    prompts: Sequence[list[dict[str, str]]],
    completions: Sequence[Sequence[str]],
    reporter: Reporter,
    batch_size: int,
    max_length: int = 1024,
    bf16: str = "auto",
    device: str | None = None,
) -> list[list[float]]:
    """The reward of every completion of every prompt (`completions[i]` answers `prompts[i]`),
    read as a score run reads each side of a pair; result[i][j] scores completions[i][j]."""
    from worker.training.judge import RewardJudge

    if reporter.should_stop():
        raise Cancelled()
    reporter.phase("loading the model")
    judge = RewardJudge(reward, max_length=max_length, batch_size=batch_size, bf16=bf16, device=device)
    flat = [(messages, text) for messages, texts in zip(prompts, completions, strict=True) for text in texts]
    scores = judge.scores([m for m, _ in flat], [t for _, t in flat]) if flat else []
    del judge
    rewards: list[list[float]] = []
    for texts in completions:
        rewards.append(scores[: len(texts)])
        scores = scores[len(texts) :]
    return rewards


def informative_pairs(rewards: Sequence[float], count: int) -> list[tuple[int, int]]:
    """The `count` pairs (i, j), i < j, of these completions whose Bradley-Terry probability is
    nearest a coin toss: the smallest reward margin |r_i - r_j| first (ties: the earlier pair)."""
    pairs = [(i, j) for i in range(len(rewards)) for j in range(i + 1, len(rewards))]
    pairs.sort(key=lambda pair: abs(rewards[pair[0]] - rewards[pair[1]]))
    return pairs[:count]


def pair_score(reward_a: float, reward_b: float) -> dict[str, float]:
    """A pair's predicted preference (that a is preferred), uncertainty and priority, as a
    one-member score run with the margin measure stores them."""
    prediction, uncertainty = combine([sigmoid(reward_a - reward_b)], "margin")
    return {"predicted_preference": prediction, "uncertainty": uncertainty, "priority": uncertainty}
