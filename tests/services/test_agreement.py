"""Agreement arithmetic on hand-made vote tables, checked against known values and `krippendorff`."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import krippendorff
import numpy as np
import pytest

from app.services.quality.agreement import (
    PairCounts,
    alpha_from_histograms,
    binomial_test,
    coincidences,
    competition_ranks,
    histograms,
    kendall_tau_b,
    krippendorff_alpha,
    pair_counts,
    percent_agreement,
    signed_value,
)

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units,
# missing values; published alphas: nominal 0.743, ordinal 0.815, interval 0.849.
K2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]

# Signed-strength tables (raters x comparisons), None = the rater did not judge the pair.
SIGNED_TABLES = {
    "three raters, a few gaps": [
        [2, 1, 0, -1, -2, 1, None, 2, 0, -1],
        [1, 1, 0, -2, -2, None, 1, 2, 1, -1],
        [2, None, -1, -1, -2, 1, 2, 1, 0, None],
    ],
    "two raters, opposed on some pairs": [
        [2, -2, 1, 1, 0, -1, 2, 0],
        [2, 2, 1, -1, 0, -1, 1, 1],
    ],
    "four raters, sparse": [
        [None, 1, None, -2, None, 2, 0],
        [1, None, 2, None, -1, 2, None],
        [1, 1, None, -2, -1, None, 0],
        [None, -1, 2, -1, None, 1, 0],
    ],
    "three-point scale with many ties": [
        [0, 0, 1, -1, 0, 1, None, 0],
        [0, 1, 1, -1, 0, 0, 0, None],
        [None, 0, 1, 0, 0, 1, 0, 0],
    ],
}


def _units(table: list[list[object]]) -> list[list[object]]:
    """Raters x units -> one list of values per unit."""
    return [list(column) for column in zip(*table, strict=True)]


def _reference(table: list[list[object]], level: str, domain: list[object] | None = None) -> float:
    data = np.array([[np.nan if v is None else v for v in row] for row in table], dtype=float)
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=domain))


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_published_example(level: str, published: float) -> None:
    alpha = krippendorff_alpha(_units(K2011), level)  # type: ignore[arg-type]
    assert alpha == pytest.approx(published, abs=5e-4)
    assert alpha == pytest.approx(_reference(K2011, level), abs=1e-12)


@pytest.mark.parametrize("name", sorted(SIGNED_TABLES))
@pytest.mark.parametrize("level", ["ordinal", "interval"])
def test_signed_strength_tables_match_the_package(name: str, level: str) -> None:
    table = SIGNED_TABLES[name]
    ours = krippendorff_alpha(_units(table), level)  # type: ignore[arg-type]
    assert ours is not None
    assert ours == pytest.approx(_reference(table, level, [-2, -1, 0, 1, 2]), abs=1e-12)


@pytest.mark.parametrize("name", sorted(SIGNED_TABLES))
def test_nominal_alpha_on_choices_matches_the_package(name: str) -> None:
    # The same votes as A / B / tie (coded 0, 1, 2 for the package, as strings for us).
    code = {"A": 0, "B": 1, "tie": 2}
    choices = [[None if v is None else ("A" if v > 0 else "B" if v < 0 else "tie") for v in row]
               for row in SIGNED_TABLES[name]]  # fmt: skip
    coded = [[None if v is None else code[v] for v in row] for row in choices]
    ours = krippendorff_alpha(_units(choices), "nominal")
    assert ours == pytest.approx(_reference(coded, "nominal", [0, 1, 2]), abs=1e-12)


def test_random_tables_with_missing_values_match_the_package() -> None:
    rng = random.Random(7)
    checked = 0
    for _ in range(60):
        raters, units = rng.randint(2, 6), rng.randint(3, 15)
        table = [[rng.choice([-2, -1, 0, 1, 2, None]) for _ in range(units)] for _ in range(raters)]
        for level in ("nominal", "ordinal", "interval"):
            ours = krippendorff_alpha(_units(table), level)  # type: ignore[arg-type]
            with np.errstate(all="ignore"):
                try:
                    reference = _reference(table, level, [-2, -1, 0, 1, 2])
                except ValueError:
                    reference = math.nan
            if math.isnan(reference):
                assert ours is None
            else:
                assert ours == pytest.approx(reference, abs=1e-9)
                checked += 1
    assert checked > 100


def test_hand_computed_nominal_alpha_and_percent_agreement() -> None:
    # Two raters, three pairs: agree on two, disagree on one. Coincidences: o_AA = o_BB = 2,
    # o_AB = o_BA = 1; n = 6; alpha = 1 - (n - 1) * 2 / (2 * 3 * 3) = 4/9.
    units = [["A", "A"], ["B", "B"], ["A", "B"]]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(4 / 9)
    assert percent_agreement(units) == pytest.approx(2 / 3)
    co = coincidences(histograms(units))
    assert co.values == ("A", "B")
    assert co.matrix == ((2.0, 1.0), (1.0, 2.0))
    # Pairs per unit: 3 votes give 3 pairs (one agreeing), 2 votes give 1; a lone vote gives none.
    table = [["A", "A", "B"], ["A", "A"], ["tie", "B"], ["A"], [None, "B", None]]
    assert pair_counts(histograms(table)) == PairCounts(agreeing=2, pairs=5)
    assert percent_agreement(table) == pytest.approx(0.4)


def test_degenerate_tables() -> None:
    assert krippendorff_alpha([["A", "A"], ["A", "A", "A"]], "nominal") is None  # no variation
    assert krippendorff_alpha([["A"], ["B"]], "nominal") is None  # nothing pairable
    assert krippendorff_alpha([], "ordinal") is None
    assert percent_agreement([["A"], [None, "B"]]) is None
    assert krippendorff_alpha([[2, 2], [-1, -1], [0, 0]], "ordinal") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        krippendorff_alpha([["A", "B"]], "interval")


def test_histograms_give_the_same_alpha_as_raw_units() -> None:
    units = _units(SIGNED_TABLES["three raters, a few gaps"]) * 3
    counts = histograms(units)
    assert sum(counts.values()) == len(units)
    assert alpha_from_histograms(counts, "ordinal") == pytest.approx(krippendorff_alpha(units, "ordinal"))
    # Repeating every unit three times leaves alpha nearly unchanged, and multiplicities add up.
    assert alpha_from_histograms(dict(counts), "ordinal") == pytest.approx(
        alpha_from_histograms(list(counts.items()), "ordinal")
    )


def test_signed_value() -> None:
    assert [signed_value("A", 2), signed_value("A", 1), signed_value("tie", 0)] == [2, 1, 0]
    assert [signed_value("B", 1), signed_value("B", 2)] == [-1, -2]


def _brute_force(k: int, n: int, p: Fraction) -> float:
    probabilities = [math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(n + 1)]
    observed = probabilities[k] * Fraction(10_000_001, 10_000_000)
    return float(sum(x for x in probabilities if x <= observed))


def test_binomial_known_values() -> None:
    assert binomial_test(7, 10) == pytest.approx(0.34375)
    assert binomial_test(3, 10) == pytest.approx(0.34375)
    assert binomial_test(0, 10) == pytest.approx(2 / 1024)
    assert binomial_test(10, 10) == pytest.approx(2 / 1024)
    assert binomial_test(5, 10) == 1.0
    assert binomial_test(0, 0) == 1.0
    assert binomial_test(85, 100) < 1e-11
    assert 0.05 < binomial_test(55, 100) < 0.5
    with pytest.raises(ValueError):
        binomial_test(11, 10)


@pytest.mark.parametrize("p", [Fraction(1, 2), Fraction(3, 10), Fraction(7, 10), Fraction(1, 20)])
def test_binomial_matches_exact_enumeration(p: Fraction) -> None:
    for n in (1, 2, 7, 20, 33, 64):
        for k in range(n + 1):
            assert binomial_test(k, n, float(p)) == pytest.approx(_brute_force(k, n, p), rel=1e-9, abs=1e-15)


def test_binomial_is_fast_on_large_counts() -> None:
    # A rater with a million judgments: the tails are summed outward until the terms vanish.
    value = binomial_test(500_300, 1_000_000)
    assert 0.5 < value < 0.6
    assert binomial_test(520_000, 1_000_000) < 1e-50


def test_kendall_tau_b_on_hand_made_rankings() -> None:
    assert kendall_tau_b([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # one swap: C 5, D 1
    # ties on both sides: C 4, D 0, one pair tied by each rater: 4 / sqrt(5 * 5)
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) is None  # a rater who tied everything
    with pytest.raises(ValueError, match="same items"):
        kendall_tau_b([1, 2], [1, 2, 3])


def test_kendall_tau_b_matches_its_definition_through_sign_matrices() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        k = int(rng.integers(3, 10))
        x, y = rng.integers(1, k + 1, size=k), rng.integers(1, k + 1, size=k)
        sx, sy = np.sign(np.subtract.outer(x, x)), np.sign(np.subtract.outer(y, y))
        denominator = math.sqrt(float((sx**2).sum() * (sy**2).sum()))
        expected = None if denominator == 0 else float((sx * sy).sum()) / denominator
        ours = kendall_tau_b(x.tolist(), y.tolist())
        assert (ours is None) == (expected is None)
        if expected is not None:
            assert ours == pytest.approx(expected)


def test_ordinal_alpha_over_ranks_matches_the_package() -> None:
    assert competition_ranks([1, 1, 2, 3]) == (1, 1, 3, 4) == competition_ranks([1, 1, 3, 4])
    # three raters rank the 4 completions of each of two rankings; units are completions
    raters = [
        [[1, 2, 3, 4], [2, 1, 1, 4]],
        [[1, 3, 2, 4], [2, 1, 2, 3]],
        [[2, 1, 3, 4], None],
    ]
    table = [
        [v for ranking in rater for v in (competition_ranks(ranking) if ranking else [None] * 4)]
        for rater in raters
    ]
    ours = krippendorff_alpha(_units(table), "ordinal")
    assert ours == pytest.approx(_reference(table, "ordinal"))
    assert 0.3 < ours < 1.0
