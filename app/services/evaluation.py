"""Model evaluation from votes: a Bradley–Terry leaderboard of model versions, length bias.

Pure Python (no torch, no numpy): the web app computes these on request.

**Outcomes.** A game is ``(player_i, player_j, score_i)`` with ``score_i`` 1 when i won, 0.5
for a tie and 0 when j won. A tie counts as half a win for each side.

**Bradley–Terry.** ``P(i beats j) = g_i / (g_i + g_j)`` with strengths ``g = exp(theta)``. The
log-strengths ``theta`` are fitted by Hunter's (2004) MM iteration,
``g_i <- W_i / sum_j n_ij / (g_i + g_j)``, where ``W_i`` is i's score (wins plus half its ties)
and ``n_ij`` the games between i and j. A prior keeps every estimate finite, also for a player
that never lost (or never won) and for players with no games in common: each player plays
``prior`` virtual games, all ties, against a fixed reference player of strength 1. The result
is normalised to mean log-strength 0 over the players (or to 0 for an ``anchor`` player).
``to_elo`` puts it on the Elo scale (400 points = a factor 10 in odds).

**Bootstrap.** ``bootstrap_intervals`` resamples the games with replacement ``rounds`` times
(seeded), refits, and reports the percentile interval of each player's log-strength.

**Length-controlled win rate** (a simplified AlpacaEval-LC). A logistic regression of the
outcome (0, 0.5, 1; a tie is a fractional target of 0.5) on ``tanh(delta / sd(delta))``, where
``delta`` is the player's completion length minus the opponent's, fitted by Newton's method
(with a weak ridge penalty on the slope, so a perfectly length-separated set stays finite). The
LC win rate is the predicted win probability at ``delta = 0``: how often the player would win
if both answers were equally long. With fewer than two games, one outcome only, or no spread in
length differences it is the raw win rate.

**Which votes count for the leaderboard.** Judgments (human by default; ``source="ai"`` or
``"both"``) on comparisons of the project whose two completions both carry a ``model_version_id``
and carry different ones: exactly what a generate run with strategy ``versus`` puts in the
queue. Every judgment is one game; A, B or tie as the rater chose it (strength and *both bad* are
not used). Lengths are in characters: tokens are not known to the web app.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, aliased

from app.models import (
    Choice,
    Comparison,
    Completion,
    Judgment,
    JudgmentSource,
    ModelVersion,
    Prompt,
    Run,
    RunKind,
    RunStatus,
)
from app.services.preferences import LabelSource

Outcome = tuple[str, str, float]
Source = LabelSource  # whose votes count: human, ai or both

ELO_BASE = 1000.0
ELO_SCALE = 400.0 / math.log(10.0)  # Elo points per unit of log-strength

# Length-difference bins of the label length-bias figure: absolute difference in characters.
LENGTH_BINS: tuple[tuple[int, int | None], ...] = (
    (1, 50),
    (50, 200),
    (200, 500),
    (500, 1000),
    (1000, None),
)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _log1pexp(x: float) -> float:
    """log(1 + e^x) without overflow."""
    return (x if x > 0 else 0.0) + math.log1p(math.exp(-abs(x)))


# --- Bradley–Terry --------------------------------------------------------------------------


def _score(value: float) -> float:
    score = float(value)
    if not 0.0 <= score <= 1.0 or math.isnan(score):
        raise ValueError(f"an outcome score must be between 0 and 1, not {value!r}")
    return score


def _tally(
    outcomes: Iterable[Outcome],
) -> tuple[list[str], dict[str, float], dict[tuple[str, str], float]]:
    """Players in order of first appearance, each one's score, and games per unordered pair."""
    players: dict[str, None] = {}
    wins: dict[str, float] = defaultdict(float)
    games: dict[tuple[str, str], float] = defaultdict(float)
    for i, j, s in outcomes:
        i, j = str(i), str(j)
        if i == j:
            raise ValueError(f"a player cannot play itself ({i!r})")
        s = _score(s)
        players.setdefault(i)
        players.setdefault(j)
        wins[i] += s
        wins[j] += 1.0 - s
        games[(i, j) if i < j else (j, i)] += 1.0
    return list(players), wins, games


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Solve a small dense linear system by Gaussian elimination with partial pivoting."""
    n = len(vector)
    rows = [[*matrix[r], vector[r]] for r in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        head = rows[col]
        if head[col] == 0.0:
            raise ZeroDivisionError("singular system")
        for r in range(col + 1, n):
            factor = rows[r][col] / head[col]
            if factor:
                row = rows[r]
                for c in range(col, n + 1):
                    row[c] -= factor * head[c]
    solution = [0.0] * n
    for r in range(n - 1, -1, -1):
        total = rows[r][n] - sum(rows[r][c] * solution[c] for c in range(r + 1, n))
        solution[r] = total / rows[r][r]
    return solution


def _fit(
    players: Sequence[str],
    wins: dict[str, float],
    games: dict[tuple[str, str], float],
    prior: float,
    start: dict[str, float] | None = None,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> dict[str, float]:
    """Maximise the Bradley–Terry log-likelihood plus the prior's virtual games; returns
    log-strengths relative to the reference player.

    The penalised log-likelihood is strictly concave, so Newton's method (with step halving)
    converges to the same maximum as Hunter's MM iteration, in a few steps instead of hundreds.
    """
    if prior <= 0:
        raise ValueError("prior must be positive (it keeps unbeaten players finite)")
    index = {p: k for k, p in enumerate(players)}
    pairs = [(index[a], index[b], n) for (a, b), n in games.items() if n]
    # Virtual ties against the reference player (log-strength 0): prior/2 wins in `prior` games.
    score = [wins.get(p, 0.0) + prior / 2.0 for p in players]
    theta = [start.get(p, 0.0) if start else 0.0 for p in players]
    k = len(players)

    def objective(t: list[float]) -> float:
        total = 0.0
        for i in range(k):
            total += score[i] * t[i] - prior * _log1pexp(t[i])
        for i, j, n in pairs:
            total -= n * math.log(math.exp(t[i] - max(t[i], t[j])) + math.exp(t[j] - max(t[i], t[j])))
            total -= n * max(t[i], t[j])
        return total

    current = objective(theta)
    for _ in range(max_iter):
        gradient = score[:]
        hessian = [[0.0] * k for _ in range(k)]  # of the negative log-likelihood
        for i in range(k):
            p = _sigmoid(theta[i])
            gradient[i] -= prior * p
            hessian[i][i] += prior * p * (1.0 - p)
        for i, j, n in pairs:
            p = _sigmoid(theta[i] - theta[j])
            gradient[i] -= n * p
            gradient[j] -= n * (1.0 - p)
            w = n * p * (1.0 - p)
            hessian[i][i] += w
            hessian[j][j] += w
            hessian[i][j] -= w
            hessian[j][i] -= w
        step = _solve(hessian, gradient)
        t = 1.0
        while True:
            trial = [theta[i] + t * step[i] for i in range(k)]
            value = objective(trial)
            if value >= current or t < 1e-6:
                break
            t /= 2.0
        moved = max((abs(a - b) for a, b in zip(trial, theta, strict=True)), default=0.0)
        theta, current = trial, value
        if moved < tol:
            break
    return dict(zip(players, theta, strict=True))


def _normalise(theta: dict[str, float], anchor: str | None) -> dict[str, float]:
    if not theta:
        return {}
    if anchor is not None:
        if anchor not in theta:
            raise ValueError(f"anchor {anchor!r} played no game")
        shift = theta[anchor]
    else:
        shift = sum(theta.values()) / len(theta)
    return {p: t - shift for p, t in theta.items()}


def bradley_terry(
    outcomes: Iterable[Outcome],
    *,
    prior: float = 1.0,
    anchor: str | None = None,
    players: Iterable[str] | None = None,
) -> dict[str, float]:
    """Bradley–Terry log-strengths of the players (see the module docstring).

    ``prior`` is the number of virtual tie games each player plays against a reference of
    strength 1 (larger: more shrinkage toward equal strength). ``players`` adds players that may
    have no game (they get log-strength 0 before normalisation). Normalised to mean 0, or to
    ``theta[anchor] == 0``. ``theta_i - theta_j`` is the log-odds of i beating j.
    """
    found, wins, games = _tally(outcomes)
    order = list(dict.fromkeys([*found, *(str(p) for p in players or ())]))
    return _normalise(_fit(order, wins, games, prior), anchor)


def to_elo(theta: dict[str, float], *, base: float = ELO_BASE) -> dict[str, float]:
    """Log-strengths on the Elo scale: ``base + 400 * theta / ln 10``."""
    return {p: base + ELO_SCALE * t for p, t in theta.items()}


def win_probability(theta_i: float, theta_j: float) -> float:
    """The Bradley–Terry probability that i beats j."""
    return 1.0 / (1.0 + math.exp(theta_j - theta_i))


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw: geometric skipping for small n*p, else Hörmann's (1993) BTRS
    transformed rejection (the algorithm of Python 3.12's ``random.binomialvariate``)."""
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - _binomial(rng, n, 1.0 - p)
    if n * p < 10.0:
        x = y = 0
        c = math.log(1.0 - p)
        if not c:
            return 0
        while True:
            y += math.floor(math.log(1.0 - rng.random()) / c) + 1
            if y > n:
                return x
            x += 1
    spq = math.sqrt(n * p * (1.0 - p))
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    vr = 0.92 - 4.2 / b
    alpha = (2.83 + 5.1 / b) * spq
    lpq = math.log(p / (1.0 - p))
    m = math.floor((n + 1) * p)
    h = math.lgamma(m + 1) + math.lgamma(n - m + 1)
    while True:
        u = rng.random() - 0.5
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + c)
        if k < 0 or k > n:
            continue
        v = rng.random()
        if us >= 0.07 and v <= vr:
            return k
        v *= alpha / (a / (us * us) + b)
        if math.log(v) <= h - math.lgamma(k + 1) - math.lgamma(n - k + 1) + (k - m) * lpq:
            return k


def bootstrap_intervals(
    outcomes: Sequence[Outcome],
    *,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    prior: float = 1.0,
    anchor: str | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of each player's log-strength (same normalisation as
    `bradley_terry`): the games are resampled with replacement ``rounds`` times."""
    if not 0.0 < level < 1.0:
        raise ValueError("level must be between 0 and 1")
    outcomes = [(str(i), str(j), _score(s)) for i, j, s in outcomes]
    if not outcomes:
        return {}
    players, wins, games = _tally(outcomes)
    point = _fit(players, wins, games, prior)
    if rounds < 1:
        centre = _normalise(point, anchor)
        return {p: (t, t) for p, t in centre.items()}
    # Identical games are one category, and a resample is a multinomial draw of the category
    # counts (drawn as a chain of binomials): the same distribution as drawing len(outcomes)
    # games one by one, at a cost that does not grow with the number of games.
    kinds = sorted(Counter(outcomes).items())
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {p: [] for p in players}
    for _ in range(rounds):
        left = len(outcomes)
        remaining_weight = len(outcomes)
        r_wins: dict[str, float] = defaultdict(float)
        r_games: dict[tuple[str, str], float] = defaultdict(float)
        for (i, j, s), weight in kinds:
            if left <= 0:
                break
            count = left if weight >= remaining_weight else _binomial(rng, left, weight / remaining_weight)
            left -= count
            remaining_weight -= weight
            if count:
                r_wins[i] += s * count
                r_wins[j] += (1.0 - s) * count
                r_games[(i, j) if i < j else (j, i)] += count
        theta = _normalise(_fit(players, r_wins, r_games, prior, start=point, tol=1e-7), anchor)
        for p, t in theta.items():
            samples[p].append(t)
    tail = (1.0 - level) / 2.0
    intervals = {}
    for p, values in samples.items():
        values.sort()
        intervals[p] = (_percentile(values, tail), _percentile(values, 1.0 - tail))
    return intervals


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

    Aggregated in the database: the votes are counted per comparison first, so each pair's two
    completion lengths are read once however many raters judged it, and the sums per length
    bin come back as a handful of rows."""
    votes = (
        select(
            Judgment.comparison_id.label("comparison_id"),
            func.sum(case((Judgment.choice == Choice.A, 1), else_=0)).label("a"),
            func.sum(case((Judgment.choice == Choice.B, 1), else_=0)).label("b"),
            func.sum(case((Judgment.choice == Choice.tie, 1), else_=0)).label("tie"),
        )
        .where(Judgment.project_id == project_id, *_source_filter(source))
        .group_by(Judgment.comparison_id)
        .subquery()
    )
    comp_a, comp_b = aliased(Completion), aliased(Completion)
    pairs = (
        select(
            votes.c.a,
            votes.c.b,
            votes.c.tie,
            func.length(comp_a.text).label("la"),
            func.length(comp_b.text).label("lb"),
        )
        .join(Comparison, Comparison.id == votes.c.comparison_id)
        .join(comp_a, comp_a.id == Comparison.completion_a_id)
        .join(comp_b, comp_b.id == Comparison.completion_b_id)
        # OFFSET 0 keeps PostgreSQL from inlining the subquery: the lengths are taken once and
        # the texts do not travel into the grouping (which would sort them on disk).
        .offset(0)
        .subquery()
    )
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


@dataclass(frozen=True)
class VersionGame:
    """One vote between two model versions, from the side of completion A."""

    judgment_id: int
    comparison_id: int
    version_a: int
    version_b: int
    score_a: float
    length_a: int
    length_b: int


def version_games(session: Session, project_id: int, *, source: Source = "human") -> list[VersionGame]:
    """The votes the leaderboard counts (module docstring), in judgment order."""
    comp_a, comp_b = aliased(Completion), aliased(Completion)
    rows = session.execute(
        select(
            Judgment.id,
            Comparison.id,
            comp_a.model_version_id,
            comp_b.model_version_id,
            Judgment.choice,
            func.length(comp_a.text),
            func.length(comp_b.text),
        )
        .join(Comparison, Comparison.id == Judgment.comparison_id)
        .join(comp_a, comp_a.id == Comparison.completion_a_id)
        .join(comp_b, comp_b.id == Comparison.completion_b_id)
        .where(
            Judgment.project_id == project_id,
            comp_a.model_version_id.is_not(None),
            comp_b.model_version_id.is_not(None),
            comp_a.model_version_id != comp_b.model_version_id,
            *_source_filter(source),
        )
        .order_by(Judgment.id)
    ).all()
    score = {"A": 1.0, "B": 0.0, "tie": 0.5}
    return [
        VersionGame(
            judgment_id=jid,
            comparison_id=cid,
            version_a=va,
            version_b=vb,
            score_a=score[str(choice.value if hasattr(choice, "value") else choice)],
            length_a=int(la or 0),
            length_b=int(lb or 0),
        )
        for jid, cid, va, vb, choice, la, lb in rows
    ]


@dataclass
class LeaderboardRow:
    rank: int
    model_version_id: int
    name: str
    kind: str
    parent_id: int | None
    theta: float  # Bradley–Terry log-strength, mean 0 over the versions on the board
    low: float  # bootstrap interval of theta
    high: float
    games: int
    wins: int
    ties: int
    losses: int
    win_rate: float  # (wins + ties / 2) / games, against the whole field
    lc_win_rate: float  # length-controlled: the same at equal completion length
    mean_length: float | None  # characters, over the version's completions in the project
    evaluation: dict[str, Any]  # the version's metrics["evaluation"] (evaluate runs)

    @property
    def elo(self) -> float:
        return ELO_BASE + ELO_SCALE * self.theta

    @property
    def elo_low(self) -> float:
        return ELO_BASE + ELO_SCALE * self.low

    @property
    def elo_high(self) -> float:
        return ELO_BASE + ELO_SCALE * self.high


@dataclass
class Leaderboard:
    """Versions ranked by Bradley–Terry strength, with the pairwise record behind it.

    ``matrix[i][j]`` is row i's score rate against row j (wins plus half the ties over games),
    ``None`` where they never met; ``matrix_games[i][j]`` the number of games.
    """

    source: str
    games: int
    rounds: int
    level: float
    rows: list[LeaderboardRow] = field(default_factory=list)
    matrix: list[list[float | None]] = field(default_factory=list)
    matrix_games: list[list[int]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rows


def leaderboard(
    session: Session,
    project_id: int,
    *,
    source: Source = "human",
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    prior: float = 1.0,
) -> Leaderboard:
    """Rank the model versions of a project's version-vs-version votes (module docstring)."""
    games = version_games(session, project_id, source=source)
    board = Leaderboard(source=source, games=len(games), rounds=rounds, level=level)
    if not games:
        return board
    outcomes = [(str(g.version_a), str(g.version_b), g.score_a) for g in games]
    theta = bradley_terry(outcomes, prior=prior)
    intervals = _cached_intervals(tuple(sorted(Counter(outcomes).items())), rounds, seed, level, prior)

    record: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # wins, ties, losses
    scores: dict[int, list[float]] = defaultdict(list)
    deltas: dict[int, list[float]] = defaultdict(list)
    pair_score: dict[tuple[int, int], float] = defaultdict(float)
    pair_games: dict[tuple[int, int], int] = defaultdict(int)
    for g in games:
        for me, other, s, mine, theirs in (
            (g.version_a, g.version_b, g.score_a, g.length_a, g.length_b),
            (g.version_b, g.version_a, 1.0 - g.score_a, g.length_b, g.length_a),
        ):
            record[me][0 if s == 1.0 else 1 if s == 0.5 else 2] += 1
            scores[me].append(s)
            deltas[me].append(float(mine - theirs))
            pair_score[(me, other)] += s
            pair_games[(me, other)] += 1

    ids = [int(p) for p in theta]
    versions = {v.id: v for v in session.scalars(select(ModelVersion).where(ModelVersion.id.in_(ids)))}
    lengths = {v.model_version_id: v.mean_length for v in policy_lengths(session, project_id)}
    ids.sort(key=lambda vid: (-theta[str(vid)], vid))
    for rank, vid in enumerate(ids, start=1):
        version = versions.get(vid)
        wins, ties, losses = record[vid]
        low, high = intervals[str(vid)]
        board.rows.append(
            LeaderboardRow(
                rank=rank,
                model_version_id=vid,
                name=version.name if version else f"#{vid}",
                kind=str(version.kind) if version else "",
                parent_id=version.parent_id if version else None,
                theta=theta[str(vid)],
                low=low,
                high=high,
                games=wins + ties + losses,
                wins=wins,
                ties=ties,
                losses=losses,
                win_rate=sum(scores[vid]) / len(scores[vid]),
                lc_win_rate=length_controlled_win_rate(scores[vid], deltas[vid]),
                mean_length=lengths.get(vid),
                evaluation=evaluation_figures(version) if version else {},
            )
        )
    board.matrix = [
        [pair_score[(i, j)] / pair_games[(i, j)] if pair_games.get((i, j)) else None for j in ids]
        for i in ids
    ]
    board.matrix_games = [[pair_games.get((i, j), 0) for j in ids] for i in ids]
    return board


@functools.lru_cache(maxsize=64)
def _cached_intervals(
    games: tuple[tuple[Outcome, int], ...], rounds: int, seed: int, level: float, prior: float
) -> dict[str, tuple[float, float]]:
    """`bootstrap_intervals` keyed by the games themselves (a multiset): pages reloaded while
    no vote arrived reuse the resamples; any new vote is a new key."""
    outcomes = [game for game, count in games for _ in range(count)]
    return bootstrap_intervals(outcomes, rounds=rounds, seed=seed, level=level, prior=prior)


def evaluation_figures(version: ModelVersion) -> dict[str, Any]:
    """The scalar figures an evaluate run stored in ``metrics["evaluation"]``."""
    evaluation = (version.metrics or {}).get("evaluation")
    if not isinstance(evaluation, dict):
        return {}
    return {k: v for k, v in evaluation.items() if isinstance(v, str | int | float | bool) or v is None}


@dataclass(frozen=True)
class EvaluatedVersion:
    model_version_id: int
    name: str
    kind: str
    figures: dict[str, Any]


def evaluated_versions(session: Session, project_id: int) -> list[EvaluatedVersion]:
    """The versions with evaluate-run results for this project (``evaluation.project_id``), or
    versions of the project with results, newest first."""
    result = []
    for version in session.scalars(
        select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    ):
        figures = evaluation_figures(version)
        if not figures:
            continue
        owner = figures.get("project_id", version.project_id)
        if owner != project_id and version.project_id != project_id:
            continue
        result.append(EvaluatedVersion(version.id, version.name, str(version.kind), figures))
    return result


@dataclass(frozen=True)
class EvaluateResult:
    """One finished evaluate run: which version, against what, judged by whom, and its figures."""

    run_id: int
    finished_at: Any
    model_version_id: int | None
    model: str
    kind: str  # "reward" or "policy": what was evaluated
    reference: str | None
    judge: str | None
    figures: dict[str, Any]


def evaluate_results(session: Session, project_id: int, *, limit: int = 100) -> list[EvaluateResult]:
    """Every succeeded evaluate run of the project, newest first: the history of a version's
    figures, one row per reference and judge (a version's metrics keep only the latest)."""
    rows = session.scalars(
        select(Run)
        .where(Run.project_id == project_id, Run.kind == RunKind.evaluate, Run.status == RunStatus.succeeded)
        .order_by(Run.finished_at.desc(), Run.id.desc())
        .limit(limit)
    ).all()
    model_ids = {int(r.config["model_id"]) for r in rows if isinstance((r.config or {}).get("model_id"), int)}
    kinds: dict[int, Any] = {}
    if model_ids:
        query = select(ModelVersion.id, ModelVersion.kind).where(ModelVersion.id.in_(model_ids))
        kinds = {vid: kind for vid, kind in session.execute(query)}
    result = []
    for run in rows:
        summary = dict(run.summary or {})
        config = dict(run.config or {})
        kind = kinds.get(config.get("model_id"))
        # a deleted version: a policy's figures are a win rate, a reward model's an accuracy
        kind_name = str(kind) if kind is not None else ("policy" if "win_rate" in summary else "reward")
        figures = {
            k: v
            for k, v in summary.items()
            if k not in ("model", "reference", "judge")
            and (isinstance(v, str | int | float | bool) or v is None)
        }
        result.append(
            EvaluateResult(
                run_id=run.id,
                finished_at=run.finished_at,
                model_version_id=config.get("model_id"),
                model=str(summary.get("model") or f"#{config.get('model_id')}"),
                kind=kind_name,
                reference=summary.get("reference"),
                judge=summary.get("judge"),
                figures=figures,
            )
        )
    return result
