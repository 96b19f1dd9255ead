"""Learning curves of label selection: how accurate a reward model gets for the human labels it
was given, when raters are served pairs by the project's selection strategy.

Everything runs through the application: the pairs are the project's comparisons, a simulated
rater claims them with `rating.claim_next` (so the project's strategy, leases and overlap decide
the order) and answers with the oracle through `rating.submit_judgment`; the labels are read back
with `preference_rows` (the rules every training run uses), and after each batch of labels a tiny
reward model is fitted from scratch and scores the open pairs as a score run would
(`combine` and `write_scores` of app/services/runs/scores.py), so
the uncertainty strategy serves the least certain pair next.

The reward model is linear, r(x) = w . phi(x), phi the word counts of the response over a fixed
vocabulary, fitted by Newton's method on the Bradley-Terry loss with an L2 penalty (the loss of
TRL's RewardTrainer). It is pure Python: small vocabularies only (tens of words). A curve point
is the number of human labels given, the preference rows they became (ties and drops give none)
and the held-out accuracy: the share of held-out pairs whose better side (by the oracle) scores
higher, a zero difference counting as half.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from app.models import Comparison, ComparisonKind, Completion, Project
from app.services import rating
from app.services.preferences import preference_rows
from app.services.rating import JudgmentInput
from app.services.runs.scores import combine, sigmoid, write_scores

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class CurvePoint:
    labels: int  # human labels given so far
    rows: int  # the preference rows they became (ties and dropped votes give none)
    accuracy: float  # on the held-out pairs


def features(text: str, vocabulary: Sequence[str]) -> list[float]:
    """Counts of each vocabulary word in `text` (lower-cased `\\w+` tokens)."""
    index = {word: i for i, word in enumerate(vocabulary)}
    counts = [0.0] * len(vocabulary)
    for token in _WORD.findall(text.lower()):
        at = index.get(token)
        if at is not None:
            counts[at] += 1.0
    return counts


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the matrix is positive definite)."""
    n = len(vector)
    a = [row[:] + [vector[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(col + 1, n):
            factor = a[r][col] / a[col][col]
            if factor:
                for c in range(col, n + 1):
                    a[r][c] -= factor * a[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (a[r][n] - sum(a[r][c] * x[c] for c in range(r + 1, n))) / a[r][r]
    return x


def fit_bradley_terry(diffs: Sequence[Sequence[float]], *, dim: int, l2: float = 0.1,
                      iterations: int = 25) -> list[float]:  # fmt: skip
    """Weights minimising sum -log sigmoid(w . d) + l2/2 |w|^2 over the rows' feature
    differences d = phi(chosen) - phi(rejected); zeros when there are none."""
    w = [0.0] * dim
    for _ in range(iterations if diffs else 0):
        grad = [l2 * wi for wi in w]
        hess = [[l2 if i == j else 0.0 for j in range(dim)] for i in range(dim)]
        for d in diffs:
            p = sigmoid(sum(wi * di for wi, di in zip(w, d, strict=True)))
            for i in range(dim):
                if d[i]:
                    grad[i] -= (1.0 - p) * d[i]
                    for j in range(dim):
                        if d[j]:
                            hess[i][j] += p * (1.0 - p) * d[i] * d[j]
        step = _solve(hess, grad)
        w = [wi - si for wi, si in zip(w, step, strict=True)]
        if max(abs(s) for s in step) < 1e-8:
            break
    return w


@dataclass(frozen=True)
class LinearRewardModel:
    vocabulary: tuple[str, ...]
    weights: tuple[float, ...]

    def reward(self, text: str) -> float:
        return sum(w * x for w, x in zip(self.weights, features(text, self.vocabulary), strict=True))

    def probability(self, a: str, b: str) -> float:
        """Bradley-Terry probability that `a` is preferred over `b`."""
        return sigmoid(self.reward(a) - self.reward(b))


def fit_on_labels(
    session: Session, project: Project, vocabulary: Sequence[str], *, l2: float = 0.1
) -> tuple[LinearRewardModel, int]:
    """A linear reward model fitted on the project's human labels (majority per pair, as a reward
    run reads them); also the number of rows it was fitted on."""
    diffs = []
    for row in preference_rows(session, project_id=project.id, label_source="human"):
        assert row.chosen_side is not None and row.rejected_side is not None
        chosen, rejected = (
            features(row.chosen_side.text, vocabulary),
            features(row.rejected_side.text, vocabulary),
        )
        diffs.append([c - r for c, r in zip(chosen, rejected, strict=True)])
    weights = fit_bradley_terry(diffs, dim=len(vocabulary), l2=l2)
    return LinearRewardModel(tuple(vocabulary), tuple(weights)), len(diffs)


def held_out_accuracy(model: LinearRewardModel, pairs: Sequence[tuple[str, str]]) -> float:
    """Share of (better, worse) pairs the model orders right; a zero difference counts half."""
    score = 0.0
    for better, worse in pairs:
        gap = model.reward(better) - model.reward(worse)
        score += 1.0 if gap > 0 else 0.5 if gap == 0 else 0.0
    return score / len(pairs)


def score_open_pairs(session: Session, project: Project, model: LinearRewardModel) -> int:
    """What a score run does, with this model: every open regular pair's predicted preference,
    margin uncertainty and priority. Returns the pairs scored."""
    a, b = aliased(Completion), aliased(Completion)
    rows = session.execute(
        select(Comparison.id, a.text, b.text)
        .join(a, a.id == Comparison.completion_a_id)
        .join(b, b.id == Comparison.completion_b_id)
        .where(
            Comparison.project_id == project.id,
            Comparison.kind == ComparisonKind.regular,
            Comparison.judgment_count < project.overlap + Comparison.extra_raters,
        )
    ).all()
    scores = []
    for comparison_id, text_a, text_b in rows:
        prediction, uncertainty = combine([model.probability(text_a, text_b)], "margin")
        scores.append({"comparison_id": comparison_id, "predicted_preference": prediction,
                       "uncertainty": uncertainty, "priority": uncertainty})  # fmt: skip
    write_scores(session, scores)
    return len(scores)


Oracle = Callable[[str], float]


def label_batch(session: Session, project: Project, *, rater_id: int, oracle: Oracle, count: int,
                noise: float = 0.0, rng: random.Random | None = None) -> int:  # fmt: skip
    """The rater claims and answers up to `count` pairs by the oracle (flipped with probability
    `noise`; equal scores are a tie); returns the labels given."""
    rng = rng or random.Random(0)
    given = 0
    for _ in range(count):
        assignment = rating.claim_next(session, project=project, rater_id=rater_id)
        if assignment is None:
            break
        view = rating.pair_view(session, assignment)
        gap = oracle(view.right_text) - oracle(view.left_text)  # positive: right better
        pick = 0 if gap == 0 else (1 if gap > 0 else -1)
        if pick and rng.random() < noise:
            pick = -pick
        rating.submit_judgment(session, project=project, rater_id=rater_id,
                               data=JudgmentInput(assignment.id, pick=pick))  # fmt: skip
        given += 1
    return given


def learning_curve(session: Session, project: Project, *, rater_id: int, oracle: Oracle,
                   vocabulary: Sequence[str], held_out: Sequence[tuple[str, str]], batch: int,
                   rounds: int, noise: float = 0.0, seed: int = 0,
                   l2: float = 0.1) -> list[CurvePoint]:  # fmt: skip
    """Label `rounds` batches of `batch` pairs through the project's claim order, refitting the
    reward model and rescoring the open pairs after each; one point per round."""
    rng = random.Random(seed)
    points = []
    labels = 0
    for _ in range(rounds):
        labels += label_batch(
            session, project, rater_id=rater_id, oracle=oracle, count=batch, noise=noise, rng=rng
        )
        model, rows = fit_on_labels(session, project, vocabulary, l2=l2)
        points.append(CurvePoint(labels, rows, held_out_accuracy(model, held_out)))
        score_open_pairs(session, project, model)
    return points
