"""A small learning curve through the app's own claim order: a linear reward model (tiny, fitted
from scratch after every batch of labels) learns a known preference faster when raters are served
the pairs it is least sure of than in arrival order. Averaged over seeds, so not flaky."""

from __future__ import annotations

import random

import pytest
from sqlalchemy.orm import Session

from app.models import SelectionStrategy
from app.services.selection.learning_curve import fit_bradley_terry, learning_curve
from tests.utils.factories import make_pair, make_project, make_user

VOCABULARY = tuple(f"w{i}" for i in range(12))
SEEDS = (0, 1, 2, 3, 4)
BATCH, ROUNDS = 6, 6
# Uncertainty's held-out accuracy, averaged over the seeds, beats arrival order's by at least this
# at the last point, and by CURVE_MARGIN averaged over the whole curve.
FINAL_MARGIN = 0.05
CURVE_MARGIN = 0.03


def _world(seed: int) -> tuple[dict[str, float], list[tuple[str, str]], list[tuple[str, str]]]:
    """The oracle's word weights, a pool of pairs in arrival order and held-out (better, worse)
    pairs; no pair is an oracle tie.

    One word matters most (the newest generation learned to say it: the newest half of the pool,
    served first in arrival order, are pairs where one side says it and the other does not);
    eleven minor words carry the rest of the preference (the older half: pairs without it). The
    held-out pairs are half of each kind. Once the model knows the main word, the newest pairs
    teach it little; the uncertain ones are the minor pairs."""
    rng = random.Random(seed)
    main, minor = VOCABULARY[0], VOCABULARY[1:]
    weights = {main: 4.0} | {w: rng.choice((-1, 1)) * rng.uniform(0.3, 1.0) for w in minor}

    def value(text: str) -> float:
        return sum(weights[w] for w in text.split())

    def pairs(n: int, with_main: bool) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while len(out) < n:
            a, b = [[rng.choice(minor) for _ in range(4)] for _ in range(2)]
            if with_main:
                a[rng.randrange(4)] = main
            if abs(value(" ".join(a)) - value(" ".join(b))) > 1e-9:
                out.append((" ".join(a), " ".join(b)) if rng.random() < 0.5 else (" ".join(b), " ".join(a)))
        return out

    pool = pairs(60, with_main=False) + pairs(60, with_main=True)  # the newest last
    held = [(a, b) if value(a) > value(b) else (b, a) for a, b in pairs(100, False) + pairs(100, True)]
    return weights, pool, held


def _curve(session: Session, strategy: SelectionStrategy, seed: int) -> list[float]:
    weights, pool, held = _world(seed)
    project = make_project(session, f"{strategy.value}-{seed}", selection_strategy=strategy)
    for i, (a, b) in enumerate(pool):
        make_pair(session, project, f"prompt {i}", a, b)
    rater = make_user(session, f"rater-{strategy.value}-{seed}")
    random.seed(seed)  # the sides shown (a_on_left) are drawn from the global generator
    points = learning_curve(
        session, project, rater_id=rater.id, oracle=lambda text: sum(weights[w] for w in text.split()),
        vocabulary=VOCABULARY, held_out=held, batch=BATCH, rounds=ROUNDS, seed=seed,
    )  # fmt: skip
    assert [p.labels for p in points] == [BATCH * (n + 1) for n in range(ROUNDS)]
    assert all(p.rows == p.labels for p in points)  # no ties, one vote per pair: every label is a row
    return [p.accuracy for p in points]


def test_bradley_terry_fit_recovers_the_ordering() -> None:
    diffs = [[1.0, -1.0], [2.0, 0.0], [0.0, -1.0], [1.0, 1.0]]  # word 0 good, word 1 bad
    w = fit_bradley_terry(diffs, dim=2, l2=0.1)
    assert w[0] > 0 > w[1]
    assert fit_bradley_terry([], dim=3) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_uncertainty_beats_arrival_order(session: Session) -> None:
    strategies = (SelectionStrategy.arrival, SelectionStrategy.uncertainty)
    curves = {s: [_curve(session, s, seed) for seed in SEEDS] for s in strategies}
    # mean over seeds at each point; measured: arrival 0.689 0.748 0.796 0.815 0.828 0.834,
    # uncertainty 0.689 0.784 0.835 0.871 0.899 0.922 (the first batch is the same: nothing scored)
    at = {s: [sum(c[n] for c in cs) / len(cs) for n in range(ROUNDS)] for s, cs in curves.items()}
    arrival, uncertainty = at[SelectionStrategy.arrival], at[SelectionStrategy.uncertainty]
    assert uncertainty[-1] - arrival[-1] >= FINAL_MARGIN, at
    assert sum(uncertainty) / ROUNDS - sum(arrival) / ROUNDS >= CURVE_MARGIN, at
