"""Length bias: of the labels (does the longer answer win?), of policies (how long do they
write?), and the length-controlled win rate.

Lengths are in characters: tokens are not known to the web app.

**Length-controlled win rate** (a simplified AlpacaEval-LC). A logistic regression of the
outcome (0, 0.5, 1; a tie is a fractional target of 0.5) on ``tanh(delta / sd(delta))``, where
``delta`` is the player's completion length minus the opponent's, fitted by Newton's method
(with a weak ridge penalty on the slope, so a perfectly length-separated set stays finite). The
LC win rate is the predicted win probability at ``delta = 0``: how often the player would win
if both answers were equally long. With fewer than two games, one outcome only, or no spread in
length differences it is the raw win rate.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.models import ComparisonTally, Completion, Judgment, JudgmentSource, ModelVersion, Prompt
from app.services.evaluation.bradley_terry import _log1pexp, _score, _sigmoid
from app.services.preferences import LabelSource

Source = LabelSource  # whose votes count: human, ai or both

# Length-difference bins of the label length-bias figure: absolute difference in characters.
LENGTH_BINS: tuple[tuple[int, int | None], ...] = (
    (1, 50),
    (50, 200),
    (200, 500),
    (500, 1000),
    (1000, None),
)


# --- Length-controlled win rate -------------------------------------------------------------

LC_RIDGE = 0.1  # penalty on the squared slope: a weak prior that only matters under separation


def _log_loss(a: float, b: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    loss = 0.5 * LC_RIDGE * b * b
    for x, y in zip(xs, ys, strict=True):
        z = a + b * x
        loss += _log1pexp(z) - y * z  # -[y log p + (1-y) log(1-p)]
    return loss


def length_controlled_win_rate(outcomes: Sequence[float], length_deltas: Sequence[float]) -> float:
    """The win rate at equal length (see the module docstring).

    ``outcomes[k]`` is the player's score in game k (1 win, 0.5 tie, 0 loss) and
    ``length_deltas[k]`` its completion's length minus the opponent's. Returns
    ``sigmoid(intercept)`` of ``outcome ~ sigmoid(intercept + slope * tanh(delta / sd))``.
    """
    if len(outcomes) != len(length_deltas):
        raise ValueError("outcomes and length_deltas differ in length")
    if not outcomes:
        raise ValueError("no games")
    ys = [_score(y) for y in outcomes]
    raw = sum(ys) / len(ys)
    deltas = [float(d) for d in length_deltas]
    if len(ys) < 2 or min(ys) == max(ys):
        return raw
    sd = statistics.pstdev(deltas)
    if not sd > 0:
        return raw
    xs = [math.tanh(d / sd) for d in deltas]
    a = math.log(raw / (1.0 - raw)) if 0.0 < raw < 1.0 else 0.0
    b = 0.0
    loss = _log_loss(a, b, xs, ys)
    for _ in range(100):
        g_a = g_b = 0.0
        h_aa = h_ab = h_bb = 0.0
        for x, y in zip(xs, ys, strict=True):
            p = _sigmoid(a + b * x)
            r = p - y
            w = p * (1.0 - p)
            g_a += r
            g_b += r * x
            h_aa += w
            h_ab += w * x
            h_bb += w * x * x
        g_b += LC_RIDGE * b
        h_bb += LC_RIDGE
        det = h_aa * h_bb - h_ab * h_ab
        if not det > 0:
            break
        step_a = (h_bb * g_a - h_ab * g_b) / det
        step_b = (h_aa * g_b - h_ab * g_a) / det
        t = 1.0
        while True:  # step halving: the penalised loss is convex, so this always descends
            new_a, new_b = a - t * step_a, b - t * step_b
            new_loss = _log_loss(new_a, new_b, xs, ys)
            if new_loss <= loss or t < 1e-8:
                break
            t /= 2.0
        converged = abs(new_a - a) < 1e-10 and abs(new_b - b) < 1e-10
        a, b, loss = new_a, new_b, new_loss
        if converged:
            break
    return _sigmoid(a)


# --- From the database ----------------------------------------------------------------------


def _source_filter(source: Source) -> list[Any]:
    if source == "both":
        return []
    return [Judgment.source == JudgmentSource(source)]


@dataclass(frozen=True)
class LengthBin:
    label: str
    low: int  # absolute length difference, characters, inclusive
    high: int | None  # exclusive; None: unbounded
    n: int
    longer_wins: int

    @property
    def rate(self) -> float | None:
        return self.longer_wins / self.n if self.n else None


@dataclass
class LabelLengthBias:
    """How often the longer completion won among decided (non-tie) judgments.

    ``n`` counts decided judgments whose completions differ in length; ``ties`` the tie votes
    and ``equal_length`` decided judgments on equally long completions (neither counts in
    ``n``). ``by_delta`` splits ``n`` by the absolute length difference in characters.
    """

    source: str
    n: int = 0
    longer_wins: int = 0
    ties: int = 0
    equal_length: int = 0
    mean_chosen_length: float | None = None
    mean_rejected_length: float | None = None
    by_delta: list[LengthBin] = field(default_factory=list)

    @property
    def longer_wins_rate(self) -> float | None:
        return self.longer_wins / self.n if self.n else None


def _bin_label(low: int, high: int | None) -> str:
    return f"{low}–{high - 1} chars" if high is not None else f"≥ {low} chars"


def label_length_bias(session: Session, project_id: int, *, source: Source = "human") -> LabelLengthBias:
    """The length bias of a project's labels (see `LabelLengthBias`).

    Aggregated in the database from the comparison tallies (votes per choice and the two
    completions' lengths, kept per comparison and source): the sums per length bin come back as
    a handful of rows."""
    t = ComparisonTally
    where = [t.project_id == project_id, t.votes > 0]
    if source != "both":
        where.append(t.source == JudgmentSource(source).value)
    pairs = select(t.a, t.b, t.tie, t.chars_a.label("la"), t.chars_b.label("lb")).where(*where).subquery()
    la, lb, a, b = pairs.c.la, pairs.c.lb, pairs.c.a, pairs.c.b
    delta = case((la > lb, la - lb), else_=lb - la)
    # -1: equal lengths; otherwise the index of the bin of the length difference
    bin_index = case(
        (la == lb, -1),
        *[
            ((delta >= low) & (delta < high) if high is not None else (delta >= low), index)
            for index, (low, high) in enumerate(LENGTH_BINS)
        ],
        else_=-2,
    )
    rows = session.execute(
        select(
            bin_index.label("bin"),
            func.coalesce(func.sum(a + b), 0),
            func.coalesce(func.sum(case((la > lb, a), (lb > la, b), else_=0)), 0),
            func.coalesce(func.sum(pairs.c.tie), 0),
            func.coalesce(func.sum(a * la + b * lb), 0),
            func.coalesce(func.sum(a * lb + b * la), 0),
        ).group_by(bin_index)
    ).all()
    result = LabelLengthBias(source=source)
    bins = [[0, 0] for _ in LENGTH_BINS]
    decided = chosen_total = rejected_total = 0
    for index, n, longer_wins, ties, chosen, rejected in rows:
        n, longer_wins, index = int(n), int(longer_wins), int(index)
        result.ties += int(ties)
        decided += n
        chosen_total += int(chosen)
        rejected_total += int(rejected)
        if index == -1:
            result.equal_length += n
            continue
        result.n += n
        result.longer_wins += longer_wins
        if index >= 0:
            bins[index][0] += n
            bins[index][1] += longer_wins
    if decided:
        result.mean_chosen_length = chosen_total / decided
        result.mean_rejected_length = rejected_total / decided
    result.by_delta = [
        LengthBin(_bin_label(low, high), low, high, n, w)
        for (low, high), (n, w) in zip(LENGTH_BINS, bins, strict=True)
    ]
    return result


@dataclass(frozen=True)
class VersionLength:
    model_version_id: int
    name: str
    kind: str
    parent_id: int | None
    created_at: Any
    completions: int
    mean_length: float
    median_length: float


def policy_lengths(session: Session, project_id: int) -> list[VersionLength]:
    """Mean and median completion length (characters) per model version, over the completions
    of the project's prompts that carry a ``model_version_id``; oldest version first."""
    rows = session.execute(
        select(Completion.model_version_id, func.length(Completion.text))
        .join(Prompt, Prompt.id == Completion.prompt_id)
        .where(Prompt.project_id == project_id, Completion.model_version_id.is_not(None))
    ).all()
    lengths: dict[int, list[int]] = defaultdict(list)
    for version_id, length in rows:
        lengths[version_id].append(int(length or 0))
    if not lengths:
        return []
    versions = session.scalars(
        select(ModelVersion)
        .where(ModelVersion.id.in_(lengths))
        .order_by(ModelVersion.created_at, ModelVersion.id)
    ).all()
    return [
        VersionLength(
            model_version_id=v.id,
            name=v.name,
            kind=str(v.kind),
            parent_id=v.parent_id,
            created_at=v.created_at,
            completions=len(lengths[v.id]),
            mean_length=sum(lengths[v.id]) / len(lengths[v.id]),
            median_length=float(statistics.median(lengths[v.id])),
        )
        for v in versions
    ]
