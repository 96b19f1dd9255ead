"""Agreement statistics: pure arithmetic on votes, no database.

Vocabulary. A *unit* is one comparison; its *values* are the votes cast on it by distinct raters
(missing votes are simply absent). Two views of a vote are used:

* **nominal**: the choice ``A``, ``B`` or ``tie``;
* **ordinal**: a signed strength in -2..2: ``+strength`` for A, ``-strength`` for B, 0 for a tie
  (see `signed_value`). On a three-point scale the values are -1, 0, 1; on two points -1, 1.

**Percent agreement** is the share of agreeing pairs among all pairs of votes cast on the same
unit (a unit with m votes gives m(m-1)/2 pairs; units with one vote give none).

**Krippendorff's alpha** (Krippendorff, *Content Analysis*, 2004, ch. 11) is computed through
the coincidence matrix: each unit with m >= 2 values adds ``n_uc * (n_uk - [c = k]) / (m - 1)``
to ``o[c][k]``, where ``n_uc`` counts the unit's values equal to c. With ``n_c`` the row sums and
``n`` their total, ``alpha = 1 - (n - 1) * sum(o[c][k] d2(c, k)) / sum(n_c n_k d2(c, k))`` with the
squared distance ``d2`` of the level of measurement:

* nominal: 0 when equal, 1 otherwise;
* ordinal: ``(sum of n_g for g from c to k in rank order - (n_c + n_k) / 2) ** 2``;
* interval: ``(c - k) ** 2``.

Alpha is 1 for perfect agreement, about 0 for agreement at chance level, and undefined (None)
when there is no variation at all (every pairable value identical) or fewer than two pairable
values.

Everything is computed from *histograms*: a unit is reduced to the counts of its values, and
equal histograms are counted once with a multiplicity. A database can therefore return the few
distinct histograms of a million votes (``GROUP BY`` the counts) instead of the votes.

**Rankings.** A unit of a ranking is one of its completions, its values the ranks raters gave
it; ranks are first put in competition form (`competition_ranks`: 1 + the number of completions
ranked strictly better, so 1, 1, 2 and 1, 1, 3 are the same order) and alpha is ordinal over
them. Between two raters of the same ranking, `kendall_tau_b` is Kendall's tau-b: ``(C - D) /
sqrt((P - T_x) (P - T_y))`` over the P = K(K-1)/2 pairs of completions, C concordant, D
discordant, T_x and T_y the pairs tied by each rater (None when either rater tied everything).

The exact binomial test (`binomial_test`) follows the usual two-sided definition: the p-value is
the total probability of all outcomes no more likely than the one observed.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Level = Literal["nominal", "ordinal", "interval"]
LEVELS: tuple[str, ...] = ("nominal", "ordinal", "interval")

# A unit's histogram: (value, count) pairs sorted by value, counts > 0.
Histogram = tuple[tuple[Hashable, int], ...]


def signed_value(choice: str, strength: int) -> int:
    """A vote on the ordinal scale: +strength for A, -strength for B, 0 for a tie."""
    if choice == "A":
        return int(strength)
    if choice == "B":
        return -int(strength)
    return 0


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def histogram(values: Iterable[Hashable | None]) -> Histogram:
    """The counts of a unit's values, missing ones (None, NaN) left out."""
    counts = Counter(v for v in values if not _missing(v))
    return tuple(sorted(counts.items(), key=lambda item: _sort_key(item[0])))


def _sort_key(value: object) -> tuple[int, object]:
    # Numbers in numeric order; anything else after them, by its text.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value))
    return (1, str(value))


def histograms(units: Iterable[Sequence[Hashable | None]]) -> Counter[Histogram]:
    """Raw units (each a sequence of values, None or NaN for missing) -> histogram multiplicities."""
    return Counter(histogram(unit) for unit in units)


@dataclass(frozen=True)
class Coincidences:
    """The coincidence matrix of a set of units, over the values that occur in pairable units."""

    values: tuple[Hashable, ...]  # sorted (numbers ascending): the rank order for ordinal alpha
    matrix: tuple[tuple[float, ...], ...]
    units: int  # pairable units (two or more values)

    @property
    def marginals(self) -> tuple[float, ...]:
        return tuple(sum(row) for row in self.matrix)

    @property
    def total(self) -> float:
        return sum(self.marginals)


def coincidences(counts: Mapping[Histogram, int] | Iterable[tuple[Histogram, int]]) -> Coincidences:
    """Build the coincidence matrix from histograms and their multiplicities."""
    items = counts.items() if isinstance(counts, Mapping) else counts
    cells: defaultdict[tuple[Hashable, Hashable], float] = defaultdict(float)
    seen: set[Hashable] = set()
    units = 0
    for hist, multiplicity in items:
        m = sum(count for _, count in hist)
        if m < 2 or multiplicity <= 0:
            continue
        units += multiplicity
        weight = multiplicity / (m - 1)
        for c, n_c in hist:
            seen.add(c)
            for k, n_k in hist:
                pairs = n_c * (n_k - 1) if c == k else n_c * n_k
                if pairs:
                    cells[(c, k)] += pairs * weight
    values = tuple(sorted(seen, key=_sort_key))
    matrix = tuple(tuple(cells.get((c, k), 0.0) for k in values) for c in values)
    return Coincidences(values=values, matrix=matrix, units=units)


def _distances(co: Coincidences, level: Level) -> list[list[float]]:
    values, n_v = co.values, co.marginals
    size = len(values)
    if level == "nominal":
        return [[0.0 if i == j else 1.0 for j in range(size)] for i in range(size)]
    if level == "interval":
        numbers: list[float] = []
        for value in values:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError("interval alpha needs numeric values")
            numbers.append(float(value))
        return [[(numbers[i] - numbers[j]) ** 2 for j in range(size)] for i in range(size)]
    if level == "ordinal":
        cumulative = [0.0]
        for count in n_v:
            cumulative.append(cumulative[-1] + count)
        result = [[0.0] * size for _ in range(size)]
        for i in range(size):
            for j in range(size):
                low, high = min(i, j), max(i, j)
                between = cumulative[high + 1] - cumulative[low]
                result[i][j] = (between - (n_v[i] + n_v[j]) / 2) ** 2
        return result
    raise ValueError(f"unknown level of measurement {level!r}; one of {', '.join(LEVELS)}")


def alpha_from_coincidences(co: Coincidences, level: Level = "nominal") -> float | None:
    n = co.total
    if n < 2 or len(co.values) < 2:
        return None
    d2 = _distances(co, level)
    n_v = co.marginals
    size = len(co.values)
    observed = sum(co.matrix[i][j] * d2[i][j] for i in range(size) for j in range(size))
    expected = sum(n_v[i] * n_v[j] * d2[i][j] for i in range(size) for j in range(size))
    if expected <= 0:
        return None
    return 1.0 - (n - 1) * observed / expected


def alpha_from_histograms(
    counts: Mapping[Histogram, int] | Iterable[tuple[Histogram, int]], level: Level = "nominal"
) -> float | None:
    return alpha_from_coincidences(coincidences(counts), level)


def krippendorff_alpha(units: Iterable[Sequence[Hashable | None]], level: Level = "nominal") -> float | None:
    """Alpha of raw reliability data: one sequence of values per unit (None or NaN = missing)."""
    return alpha_from_histograms(histograms(units), level)


@dataclass(frozen=True)
class PairCounts:
    """Agreeing pairs of votes out of all pairs of votes on the same unit."""

    agreeing: int = 0
    pairs: int = 0

    @property
    def rate(self) -> float | None:
        return self.agreeing / self.pairs if self.pairs else None

    def __add__(self, other: PairCounts) -> PairCounts:
        return PairCounts(self.agreeing + other.agreeing, self.pairs + other.pairs)

    def __sub__(self, other: PairCounts) -> PairCounts:
        return PairCounts(self.agreeing - other.agreeing, self.pairs - other.pairs)


def pair_counts(counts: Mapping[Histogram, int] | Iterable[tuple[Histogram, int]]) -> PairCounts:
    items = counts.items() if isinstance(counts, Mapping) else counts
    agreeing = pairs = 0
    for hist, multiplicity in items:
        m = sum(count for _, count in hist)
        pairs += multiplicity * m * (m - 1) // 2
        agreeing += multiplicity * sum(c * (c - 1) // 2 for _, c in hist)
    return PairCounts(agreeing, pairs)


def percent_agreement(units: Iterable[Sequence[Hashable | None]]) -> float | None:
    """Share of agreeing pairs among all pairs of votes on the same unit (None: no pairs)."""
    return pair_counts(histograms(units)).rate


def collapse(hist: Histogram, mapping: Mapping[Hashable, Hashable]) -> Histogram:
    """A histogram with its values mapped (e.g. signed strength -> A/B/tie), counts merged."""
    merged: Counter[Hashable] = Counter()
    for value, count in hist:
        merged[mapping[value]] += count
    return tuple(sorted(merged.items(), key=lambda item: _sort_key(item[0])))


def nominal_of_signed(value: int) -> str:
    """The choice of a signed vote: A for positive, B for negative, tie for 0."""
    return "A" if value > 0 else "B" if value < 0 else "tie"


def competition_ranks(ranks: Sequence[int]) -> tuple[int, ...]:
    """Ranks in competition form: 1 + the number of positions ranked strictly better."""
    return tuple(1 + sum(other < rank for other in ranks) for rank in ranks)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two rankings of the same items (None: either has no untied pair)."""
    if len(x) != len(y):
        raise ValueError("kendall_tau_b needs two rankings of the same items")
    concordant = discordant = tied_x = tied_y = pairs = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            pairs += 1
            dx, dy = x[i] - x[j], y[i] - y[j]
            tied_x += dx == 0
            tied_y += dy == 0
            product = dx * dy
            concordant += product > 0
            discordant += product < 0
    denominator = math.sqrt((pairs - tied_x) * (pairs - tied_y))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator


# --- the exact binomial test ----------------------------------------------------------------


def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


def _tail_sum(start: int, stop: int, step: int, n: int, p: float) -> float:
    """Sum of pmf(i) for i from `start` towards `stop` (inclusive), stopping once terms vanish.

    Moving away from the mode the terms only shrink, so the sum is cut when a term no longer
    changes it, or underflows to zero (so do all the terms after it: a tail far beyond the
    observed count of a large sample costs a few steps, not one per trial).
    """
    total = 0.0
    i = start
    while (step > 0 and i <= stop) or (step < 0 and i >= stop):
        term = math.exp(_log_pmf(i, n, p))
        total += term
        if term == 0.0 or term < total * 1e-17:
            break
        i += step
    return total


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial test: P(an outcome no more likely than k | n trials, success p).

    Outcomes within a relative 1e-7 of the observed probability count as equally likely (as in
    SciPy's ``binomtest``). Returns 1.0 for n = 0.
    """
    if n < 0 or not 0 <= k <= n:
        raise ValueError("need 0 <= k <= n")
    if not 0.0 <= p <= 1.0:
        raise ValueError("p must be in [0, 1]")
    if n == 0:
        return 1.0
    if p in (0.0, 1.0):
        return 1.0 if k == (0 if p == 0.0 else n) else 0.0
    log_observed = _log_pmf(k, n, p) + math.log1p(1e-7)
    mode = math.floor((n + 1) * p)
    mode = min(max(mode, 0), n)
    if k == mode or log_observed >= _log_pmf(mode, n, p):
        return 1.0

    def boundary(low: int, high: int, rising: bool) -> int:
        # On [low, high] the pmf is monotone; find the outermost index from the far tail whose
        # pmf is still <= the observed one.
        if rising:  # pmf increases with i on [low, high]: largest i with pmf(i) <= observed
            if _log_pmf(low, n, p) > log_observed:
                return low - 1
            while low < high:
                mid = (low + high + 1) // 2
                if _log_pmf(mid, n, p) <= log_observed:
                    low = mid
                else:
                    high = mid - 1
            return low
        # pmf decreases with i on [low, high]: smallest i with pmf(i) <= observed
        if _log_pmf(high, n, p) > log_observed:
            return high + 1
        while low < high:
            mid = (low + high) // 2
            if _log_pmf(mid, n, p) <= log_observed:
                high = mid
            else:
                low = mid + 1
        return low

    if k < mode:
        lower_total = _tail_sum(k, 0, -1, n, p)
        start = boundary(mode, n, rising=False)
        upper_total = _tail_sum(start, n, 1, n, p) if start <= n else 0.0
    else:
        upper_total = _tail_sum(k, n, 1, n, p)
        end = boundary(0, mode, rising=True)
        lower_total = _tail_sum(end, 0, -1, n, p) if end >= 0 else 0.0
    return min(1.0, lower_total + upper_total)
