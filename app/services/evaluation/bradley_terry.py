"""Bradley–Terry strengths of players from pairwise outcomes, with bootstrap intervals.

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
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

Outcome = tuple[str, str, float]

ELO_BASE = 1000.0
ELO_SCALE = 400.0 / math.log(10.0)  # Elo points per unit of log-strength


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
