"""Bradley–Terry, bootstrap intervals, length-controlled win rate, and the figures read from the
database: label length bias, version lengths and the version leaderboard."""

from __future__ import annotations

import math
import random

import pytest

from app.models import Role
from app.services.evaluation.bradley_terry import bootstrap_intervals, bradley_terry, to_elo, win_probability
from app.services.evaluation.leaderboard import evaluated_versions, leaderboard
from app.services.evaluation.length_bias import (
    LENGTH_BINS,
    label_length_bias,
    length_controlled_win_rate,
    policy_lengths,
)
from tests.utils.factories import (
    make_comparison,
    make_model_version,
    make_project,
    make_user,
    make_versus_pair,
    make_vote,
)

TRUE = {"p0": -1.0, "p1": -0.5, "p2": 0.0, "p3": 0.5, "p4": 1.0}  # mean 0 already


def simulate(strengths: dict[str, float], games: int, seed: int, tie_rate: float = 0.0):
    rng = random.Random(seed)
    players = list(strengths)
    outcomes = []
    for _ in range(games):
        i, j = rng.sample(players, 2)
        if rng.random() < tie_rate:
            outcomes.append((i, j, 0.5))
        else:
            p = win_probability(strengths[i], strengths[j])
            outcomes.append((i, j, 1.0 if rng.random() < p else 0.0))
    return outcomes


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --- Bradley–Terry ----------------------------------------------------------------------------


def test_bradley_terry_recovers_known_strengths() -> None:
    theta = bradley_terry(simulate(TRUE, 3000, seed=7))
    assert sorted(theta, key=theta.get) == ["p0", "p1", "p2", "p3", "p4"]
    assert abs(sum(theta.values())) < 1e-9  # normalised to mean 0
    for player, value in TRUE.items():
        assert theta[player] == pytest.approx(value, abs=0.15)
    # log-strength ratios (differences): p4 vs p0 is 2.0 in truth; the sampling error of the
    # estimate at 3000 games is about 0.075, so 0.25 is over three standard errors
    assert theta["p4"] - theta["p0"] == pytest.approx(2.0, abs=0.25)
    assert theta["p3"] - theta["p1"] == pytest.approx(1.0, abs=0.25)


def test_bradley_terry_two_players_matches_the_closed_form() -> None:
    outcomes = [("a", "b", 1.0)] * 30 + [("a", "b", 0.0)] * 10
    theta = bradley_terry(outcomes, prior=1e-6)
    assert theta["a"] - theta["b"] == pytest.approx(math.log(3.0), abs=1e-4)
    # the prior shrinks toward equal strength
    shrunk = bradley_terry(outcomes, prior=10.0)
    assert 0 < shrunk["a"] - shrunk["b"] < math.log(3.0) - 0.1
    # an anchor moves the scale, not the differences
    anchored = bradley_terry(outcomes, prior=1e-6, anchor="b")
    assert anchored["b"] == 0.0
    assert anchored["a"] == pytest.approx(math.log(3.0), abs=1e-4)
    elo = to_elo(anchored)
    assert elo["b"] == 1000.0 and elo["a"] == pytest.approx(1000 + 400 * math.log10(3.0), abs=0.05)


def test_unbeaten_and_isolated_players_stay_finite() -> None:
    theta = bradley_terry([("a", "b", 1.0)] * 10 + [("c", "d", 0.5)], players=["e"])
    assert all(math.isfinite(v) for v in theta.values())
    assert theta["c"] == pytest.approx(theta["d"])
    assert theta["a"] > theta["c"] > theta["b"]
    assert theta["e"] == pytest.approx(theta["c"])  # no games: the reference strength
    assert bradley_terry([("a", "b", 0.5)] * 5) == {"a": 0.0, "b": 0.0}
    assert bradley_terry([]) == {}
    with pytest.raises(ValueError):
        bradley_terry([("a", "b", 2.0)])
    with pytest.raises(ValueError):
        bradley_terry([("a", "a", 1.0)])


def test_tie_heavy_votes() -> None:
    # 70% ties: the order is still recovered; ties pull the estimates together
    outcomes = simulate(TRUE, 4000, seed=3, tie_rate=0.7)
    assert sum(s == 0.5 for _, _, s in outcomes) > 2600
    theta = bradley_terry(outcomes)
    assert sorted(theta, key=theta.get) == ["p0", "p1", "p2", "p3", "p4"]
    assert 0.2 < theta["p4"] - theta["p0"] < 2.0
    intervals = bootstrap_intervals(outcomes, rounds=300, seed=1)
    assert intervals["p4"][0] > intervals["p0"][1]  # the extremes are told apart


def test_bootstrap_intervals_contain_the_truth_and_shrink_with_more_data() -> None:
    small = simulate(TRUE, 3000, seed=11)
    large = small + simulate(TRUE, 9000, seed=12)
    ci_small = bootstrap_intervals(small, rounds=1000, seed=0)
    ci_large = bootstrap_intervals(large, rounds=1000, seed=0)
    theta = bradley_terry(small)
    for player, value in TRUE.items():
        low, high = ci_small[player]
        assert low < theta[player] < high
        assert low <= value <= high, (player, value, ci_small[player])
        assert ci_large[player][0] <= value <= ci_large[player][1], (player, value, ci_large[player])
        # 4x the games: intervals about half as wide
        width_small, width_large = high - low, ci_large[player][1] - ci_large[player][0]
        assert 0.35 < width_large / width_small < 0.7
    assert bootstrap_intervals(small, rounds=50, seed=5) == bootstrap_intervals(small, rounds=50, seed=5)


# --- Length-controlled win rate ---------------------------------------------------------------


def _games(seed: int, win_probability_of) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    outcomes, deltas = [], []
    for _ in range(1500):
        delta = rng.gauss(150.0, 300.0)  # the policy usually writes more
        outcomes.append(1.0 if rng.random() < win_probability_of(delta) else 0.0)
        deltas.append(delta)
    return outcomes, deltas


def test_lc_win_rate_removes_wins_explained_by_length() -> None:
    outcomes, deltas = _games(1, lambda d: sigmoid(d / 80.0))  # equal length: a coin flip
    raw = sum(outcomes) / len(outcomes)
    lc = length_controlled_win_rate(outcomes, deltas)
    assert raw > 0.65
    assert lc == pytest.approx(0.5, abs=0.05)


def test_lc_win_rate_keeps_wins_that_length_does_not_explain() -> None:
    outcomes, deltas = _games(2, lambda d: 0.8)
    raw = sum(outcomes) / len(outcomes)
    lc = length_controlled_win_rate(outcomes, deltas)
    assert raw == pytest.approx(0.8, abs=0.03)
    assert lc == pytest.approx(raw, abs=0.03)


def test_lc_win_rate_with_ties_and_degenerate_input() -> None:
    assert length_controlled_win_rate([1.0], [10.0]) == 1.0
    assert length_controlled_win_rate([1.0, 1.0, 1.0], [5.0, -3.0, 8.0]) == 1.0
    assert length_controlled_win_rate([1.0, 0.0, 1.0], [4.0, 4.0, 4.0]) == pytest.approx(2 / 3)
    assert length_controlled_win_rate([0.5, 0.5], [-10.0, 10.0]) == 0.5
    # ties are half wins: symmetric in length, centred on 0.5
    assert length_controlled_win_rate([1.0, 0.5, 0.5, 0.0], [-5.0, 5.0, -5.0, 5.0]) == pytest.approx(0.5)
    # the longer side always won: a finite fit (ridge on the slope), no crash
    separated = length_controlled_win_rate([1.0, 1.0, 0.0, 0.0], [30.0, 10.0, -10.0, -30.0])
    assert 0.4 < separated < 0.6
    with pytest.raises(ValueError):
        length_controlled_win_rate([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        length_controlled_win_rate([], [])


# --- From the database ------------------------------------------------------------------------


def test_label_length_bias_when_the_longer_answer_always_wins(session) -> None:  # type: ignore[no-untyped-def]
    project = make_project(session, "lb")
    rater = make_user(session, "r1")
    judge = make_user(session, "ai-judge:x", Role.judge)
    differences = [5, 20, 60, 150, 300, 700, 1500, 2500]
    for k, diff in enumerate(differences):
        short, long = "s" * 40, "s" * (40 + diff)
        longer_on_a = k % 2 == 0  # the longer side alternates, so position does not explain it
        a, b = (long, short) if longer_on_a else (short, long)
        pair = make_comparison(session, project, [{"role": "user", "content": f"q{k}"}], a, b)
        make_vote(session, pair, rater, "A" if longer_on_a else "B")
        make_vote(session, pair, judge, "B" if longer_on_a else "A", source="ai")  # always shorter
    tie = make_comparison(session, project, [{"role": "user", "content": "tie"}], "x", "yy")
    make_vote(session, tie, rater, "tie")
    same = make_comparison(session, project, [{"role": "user", "content": "same"}], "abc", "xyz")
    make_vote(session, same, rater, "A")

    bias = label_length_bias(session, project.id)
    assert bias.longer_wins_rate == 1.0
    assert (bias.n, bias.longer_wins, bias.ties, bias.equal_length) == (8, 8, 1, 1)
    assert len(bias.by_delta) == len(LENGTH_BINS)
    assert [b.n for b in bias.by_delta] == [2, 2, 1, 1, 2]
    assert all(b.rate == 1.0 for b in bias.by_delta)
    assert bias.mean_chosen_length > bias.mean_rejected_length

    ai = label_length_bias(session, project.id, source="ai")
    assert ai.longer_wins_rate == 0.0 and ai.n == 8
    both = label_length_bias(session, project.id, source="both")
    assert both.n == 16 and both.longer_wins_rate == 0.5


def test_label_length_bias_when_length_is_irrelevant(session) -> None:  # type: ignore[no-untyped-def]
    project = make_project(session, "lb2")
    rater = make_user(session, "r1")
    rng = random.Random(5)
    for k in range(300):
        a, b = "a" * rng.randint(10, 800), "b" * rng.randint(10, 800)
        pair = make_comparison(session, project, [{"role": "user", "content": f"q{k}"}], a, b)
        make_vote(session, pair, rater, rng.choice("AB"))
    bias = label_length_bias(session, project.id)
    assert bias.n >= 295
    assert bias.longer_wins_rate == pytest.approx(0.5, abs=0.07)
    assert label_length_bias(session, project.id, source="ai").longer_wins_rate is None


def test_label_length_bias_matches_a_count_vote_by_vote(session) -> None:  # type: ignore[no-untyped-def]
    """The database aggregates per pair and per length bin; counting each vote in Python gives
    the same figures (several raters per pair, ties, equal lengths, both sources)."""
    project = make_project(session, "lb3")
    raters = [make_user(session, f"r{i}") for i in range(4)]
    judge = make_user(session, "ai-judge:y", Role.judge)
    rng = random.Random(11)
    votes: list[tuple[str, str, int, int]] = []  # source, choice, len A, len B
    for k in range(120):
        len_a = rng.randint(1, 1800)
        len_b = len_a if k % 10 == 0 else rng.randint(1, 1800)
        pair = make_comparison(
            session, project, [{"role": "user", "content": f"q{k}"}], "a" * len_a, "b" * len_b
        )
        for rater in rng.sample(raters, rng.randint(1, 4)):
            choice = rng.choice(["A", "B", "B", "tie"])
            make_vote(session, pair, rater, choice)
            votes.append(("human", choice, len_a, len_b))
        if k % 3 == 0:
            make_vote(session, pair, judge, "A", source="ai")
            votes.append(("ai", "A", len_a, len_b))

    for source in ("human", "ai", "both"):
        mine = [v for v in votes if source == "both" or v[0] == source]
        decided = [(c, a, b) for _, c, a, b in mine if c != "tie"]
        chosen = [a if c == "A" else b for c, a, b in decided]
        rejected = [b if c == "A" else a for c, a, b in decided]
        differ = [(c, a, b) for c, a, b in decided if a != b]
        wins = [(abs(a - b), (a > b) == (c == "A")) for c, a, b in differ]
        bias = label_length_bias(session, project.id, source=source)  # type: ignore[arg-type]
        assert bias.ties == sum(v[1] == "tie" for v in mine)
        assert bias.equal_length == len(decided) - len(differ)
        assert (bias.n, bias.longer_wins) == (len(wins), sum(w for _, w in wins))
        assert bias.mean_chosen_length == pytest.approx(sum(chosen) / len(chosen))
        assert bias.mean_rejected_length == pytest.approx(sum(rejected) / len(rejected))
        for row, (low, high) in zip(bias.by_delta, LENGTH_BINS, strict=True):
            inside = [w for d, w in wins if d >= low and (high is None or d < high)]
            assert (row.n, row.longer_wins) == (len(inside), sum(inside)), (source, low)


def _versus_project(session, *, name_prefix: str = "v"):  # type: ignore[no-untyped-def]
    """Three versions, strong > mid > weak in human votes; an AI judge votes the other way."""
    project = make_project(session, "versus")
    base = make_model_version(session, f"{name_prefix}-weak", project=project)
    mid = make_model_version(session, f"{name_prefix}-mid", project=project, parent=base)
    strong = make_model_version(session, f"{name_prefix}-strong", project=project, parent=mid)
    rater = make_user(session, "rater")
    judge = make_user(session, "ai-judge:rm", Role.judge)
    strength = {base.id: -1.0, mid.id: 0.0, strong.id: 1.0}
    length = {base.id: 100, mid.id: 200, strong.id: 300}
    rng = random.Random(4)
    versions = [base, mid, strong]
    k = 0
    for _ in range(60):
        for x in range(3):
            for y in range(x + 1, 3):
                a, b = (versions[x], versions[y]) if rng.random() < 0.5 else (versions[y], versions[x])
                k += 1
                pair = make_versus_pair(
                    session,
                    project,
                    f"prompt {k}",
                    f"{k}:" + "a" * length[a.id],
                    a,
                    f"{k}:" + "b" * length[b.id],
                    b,
                )
                p = win_probability(strength[a.id], strength[b.id])
                roll = rng.random()
                human = "A" if roll < p - 0.05 else "tie" if roll < p + 0.05 else "B"
                make_vote(session, pair, rater, human)
                make_vote(session, pair, judge, "B" if human == "A" else "A", source="ai")
    # Votes that must not count: a pair of one version with itself, and one with imported text.
    same = make_versus_pair(session, project, "same", "x1", strong, "x22", strong)
    make_vote(session, same, rater, "A")
    imported = make_versus_pair(session, project, "imported", "y1", strong, "y22", None)
    make_vote(session, imported, rater, "A")
    return project, (base, mid, strong)


def test_leaderboard_ranks_versions_from_human_votes_only(session) -> None:  # type: ignore[no-untyped-def]
    project, (weak, mid, strong) = _versus_project(session)
    board = leaderboard(session, project.id, rounds=200)
    assert board.games == 180
    assert [row.model_version_id for row in board.rows] == [strong.id, mid.id, weak.id]
    assert [row.rank for row in board.rows] == [1, 2, 3]
    top, middle, bottom = board.rows
    assert top.name == strong.name and top.kind == "policy" and top.parent_id == mid.id
    for row in board.rows:
        assert row.games == 120 == row.wins + row.ties + row.losses
        assert row.low < row.theta < row.high
        assert row.win_rate == pytest.approx((row.wins + row.ties / 2) / row.games)
        assert 0.0 <= row.lc_win_rate <= 1.0
    assert top.high > top.low > bottom.high  # strong and weak are told apart
    assert top.theta - bottom.theta == pytest.approx(2.0, abs=0.6)
    assert top.elo > 1000 > bottom.elo
    # mean length over every completion of the version in the project (with the "k:" prefixes)
    strong_lengths = policy_lengths(session, project.id)
    assert [v.name for v in strong_lengths] == [weak.name, mid.name, strong.name]
    assert top.mean_length == next(v.mean_length for v in strong_lengths if v.model_version_id == strong.id)
    # pairwise matrix: each pair's two rates add up to 1, the diagonal is empty
    for i in range(3):
        assert board.matrix[i][i] is None and board.matrix_games[i][i] == 0
        for j in range(3):
            if i != j:
                assert board.matrix_games[i][j] == 60
                assert board.matrix[i][j] + board.matrix[j][i] == pytest.approx(1.0)
    assert board.matrix[0][2] > 0.6

    ai = leaderboard(session, project.id, source="ai", rounds=50)
    assert [row.model_version_id for row in ai.rows] == [weak.id, mid.id, strong.id]
    both = leaderboard(session, project.id, source="both", rounds=50)
    assert both.games == 360


def test_leaderboard_lc_win_rate_discounts_length(session) -> None:  # type: ignore[no-untyped-def]
    """Two versions of equal quality; raters pick the longer answer, and one version writes
    longer answers about 3 times in 4: its raw win rate is high, its LC win rate near 0.5."""
    project = make_project(session, "lc")
    verbose = make_model_version(session, "verbose", project=project)
    terse = make_model_version(session, "terse", project=project)
    rater = make_user(session, "rater")
    rng = random.Random(9)
    for k in range(240):
        len_v, len_t = max(5, int(rng.gauss(400, 250))), max(5, int(rng.gauss(250, 250)))
        pair = make_versus_pair(session, project, f"q{k}", "v" * len_v, verbose, "t" * len_t, terse)
        p_verbose = sigmoid((len_v - len_t) / 60.0)
        make_vote(session, pair, rater, "A" if rng.random() < p_verbose else "B")
    board = leaderboard(session, project.id, rounds=50)
    row = {r.name: r for r in board.rows}["verbose"]
    assert row.win_rate > 0.65
    assert row.lc_win_rate == pytest.approx(0.5, abs=0.1)
    assert row.mean_length > {r.name: r for r in board.rows}["terse"].mean_length
    bias = label_length_bias(session, project.id)
    assert bias.longer_wins_rate > 0.8


def test_empty_leaderboard_and_evaluated_versions(session) -> None:  # type: ignore[no-untyped-def]
    project = make_project(session, "empty")
    other = make_project(session, "other")
    board = leaderboard(session, project.id)
    assert board.empty and board.games == 0 and board.matrix == []
    assert policy_lengths(session, project.id) == []
    make_model_version(
        session,
        "rm-1",
        kind="reward",
        metrics={
            "evaluation": {"accuracy": 0.71, "length_pearson": 0.4, "run_id": 3, "project_id": project.id}
        },
    )
    make_model_version(
        session, "rm-other", kind="reward", project=other, metrics={"evaluation": {"accuracy": 0.6}}
    )
    make_model_version(session, "plain", project=project, metrics={"train_loss": 0.3})
    found = evaluated_versions(session, project.id)
    assert [(v.name, v.kind, v.figures["accuracy"]) for v in found] == [("rm-1", "reward", 0.71)]
