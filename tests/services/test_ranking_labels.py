"""Rankings as labels: the preference rows they imply (per rater and by majority, with ties and
cut-offs, on both databases), a run's snapshot of them, and the two exports (the native rankings
format and the expanded pairs), read back with `datasets`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.models import Project, Ranking, RankingJudgment, Role, User
from app.schemas.export import ComparisonExport, RankingExport
from app.services import exporting
from app.services.preferences import PreferenceStats, preference_rows
from tests.utils.factories import make_pair, make_project, make_user
from tests.utils.rankings import make_ranking


def rank(
    session: Session,
    ranking: Ranking,
    rater: User,
    ranks: list[int],
    cutoff: int | None = None,
    display_order: list[int] | None = None,
) -> RankingJudgment:
    judgment = RankingJudgment(
        ranking_id=ranking.id,
        rater_id=rater.id,
        project_id=ranking.project_id,
        ranks=ranks,
        cutoff_rank=cutoff,
        display_order=display_order or list(range(len(ranks))),
        time_spent_ms=600,
    )
    session.add(judgment)
    ranking.judgment_count += 1
    session.flush()
    return judgment


def setup(session: Session) -> tuple[Project, list[User], Ranking, Ranking]:
    """Two rankings of four completions ("w0".."w3" in stored order) by three raters.

    R1: raters 1 and 2 agree on w0 > w1 > w2 > w3; rater 3 ties w0 = w1, puts w3 above w2 and
    draws the all-bad line under w0/w1. R2: two raters split on the top pair, agree on the rest.
    """
    project = make_project(session, "ranks")
    raters = [make_user(session, f"rater{i}", Role.rater) for i in range(3)]
    one = make_ranking(session, project, "rank these", ["w0", "w1", "w2", "w3"])
    rank(session, one, raters[0], [1, 2, 3, 4])
    rank(session, one, raters[1], [1, 2, 3, 4], display_order=[3, 2, 1, 0])
    rank(session, one, raters[2], [1, 1, 3, 2], cutoff=1)
    two = make_ranking(session, project, "rank those", ["x0", "x1", "x2"])
    rank(session, two, raters[0], [1, 2, 3])
    rank(session, two, raters[1], [2, 1, 3])
    return project, raters, one, two


def labels(rows: list) -> list[tuple[str, str, float]]:
    return [(row.chosen, row.rejected, row.margin) for row in rows]


def test_majority_decides_each_implied_pair_across_raters(session: Session) -> None:
    project, _, one, two = setup(session)
    stats = PreferenceStats()
    rows = list(preference_rows(session, project_id=project.id, stats=stats))
    assert stats.rankings_read == 2 and stats.implied_pairs == 6 + 3
    got = {(row.ranking_id, row.pair): row for row in rows}
    # R1 (0,1): two votes A (strength 1), one tie -> A wins, agreement 2/3
    assert got[(one.id, (0, 1))].chosen == "w0" and got[(one.id, (0, 1))].agreement == pytest.approx(2 / 3)
    # R1 (2,3): two votes A; rater 3 put w3 above w2, but both are below its line: a both-bad
    # vote, dropped by default -> A with full agreement
    pair = got[(one.id, (2, 3))]
    assert (pair.chosen, pair.rejected, pair.votes, pair.agreement) == ("w2", "w3", 2, 1.0)
    # R1 (1,2): rater 3's line separates w1 (above) from w2 (below): strength 2 from it
    assert got[(one.id, (1, 2))].margin == pytest.approx((1 + 1 + 2) / 3)
    # R2 (0,1) is split one-one: dropped; the other two pairs are unanimous
    assert (two.id, (0, 1)) not in got
    assert stats.dropped["split"] == 1 and stats.dropped["both_bad"] == 1
    assert {(row.chosen, row.rejected) for row in rows if row.ranking_id == two.id} == {
        ("x0", "x2"),
        ("x1", "x2"),
    }
    assert all(row.comparison_id == 0 and row.messages for row in rows)


def test_per_rater_rows_are_each_raters_pairs_without_ties_or_both_bad(session: Session) -> None:
    project, raters, one, _ = setup(session)
    rows = list(preference_rows(session, project_id=project.id, aggregation="per_rater"))
    mine = [row for row in rows if row.ranking_id == one.id and row.votes_used[0].rater_id == raters[2].id]
    # rater 3: [1, 1, 3, 2] with the line at 1 -> (0,1) tie (no row), (2,3) both bad (dropped),
    # the four pairs across the line are strength-2 wins
    assert sorted(labels(mine)) == [
        ("w0", "w2", 2.0),
        ("w0", "w3", 2.0),
        ("w1", "w2", 2.0),
        ("w1", "w3", 2.0),
    ]
    first = [row for row in rows if row.ranking_id == one.id and row.votes_used[0].rater_id == raters[0].id]
    assert len(first) == 6 and all(row.votes_used[0].a_on_left for row in first)
    # rater 2 saw the completions in reverse: the later stored one was shown first
    second = [row for row in rows if row.ranking_id == one.id and row.votes_used[0].rater_id == raters[1].id]
    assert not any(row.votes_used[0].a_on_left for row in second)
    # with both-bad kept, rater 3's pair below the line counts as given (w3 above w2)
    kept = preference_rows(session, project_id=project.id, aggregation="per_rater", include_both_bad=True)
    theirs = [r for r in kept if r.ranking_id == one.id and r.votes_used[0].rater_id == raters[2].id]
    assert ("w3", "w2", 1.0) in labels(theirs)


def test_a_snapshot_reads_only_the_ranking_judgments_it_names(session: Session) -> None:
    project, raters, one, two = setup(session)
    pair = make_pair(session, project, "p", "a", "b")
    from app.models import Judgment

    vote = Judgment(comparison_id=pair.id, rater_id=raters[0].id, project_id=project.id, choice="A",
                    strength=1, a_on_left=True)  # fmt: skip
    session.add(vote)
    session.flush()
    # judgment ids alone (a run frozen before rankings existed): the pair only
    assert [
        r.comparison_id for r in preference_rows(session, project_id=project.id, judgment_ids=[vote.id])
    ] == [pair.id]
    first_of_two = session.query(RankingJudgment).filter_by(ranking_id=two.id, rater_id=raters[0].id).one()
    rows = list(
        preference_rows(
            session, project_id=project.id, judgment_ids=[vote.id], ranking_judgment_ids=[first_of_two.id]
        )
    )
    assert [r.ranking_id for r in rows] == [None, two.id, two.id, two.id]


def test_the_rankings_export_loads_with_datasets_and_its_card_counts_rankings_and_pairs(
    session: Session, tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    project, raters, one, two = setup(session)
    gold = make_ranking(session, project, "gold one", ["g0", "g1", "g2"], gold_ranks=[2, 1, 3])
    rank(session, gold, raters[0], [1, 2, 3])
    for fmt in ("jsonl", "parquet", "csv"):
        export = exporting.prepare_rankings(
            session, project=project, spec=RankingExport(format=fmt, test_fraction=0), secret_key="k"
        )
        exporting.write_directory(export, tmp_path / fmt)
        loaded = datasets.load_dataset(str(tmp_path / fmt), cache_dir=str(tmp_path / "cache"))["train"]
        assert loaded.num_rows == 3
        first = loaded[0]
        if fmt == "csv":  # nested values are JSON text in CSV
            first = {
                k: json.loads(v) if k in ("ranks", "completions", "cutoff_ranks") else v
                for k, v in first.items()
            }
        assert first["completions"] == ["w0", "w1", "w2", "w3"]
        assert first["ranks"] == [[1, 2, 3, 4], [1, 2, 3, 4], [1, 1, 3, 2]]
        assert first["cutoff_ranks"] == [-1, -1, 1]
        if fmt != "csv":
            assert loaded[2]["gold_ranks"] == [2, 1, 3] and loaded[2]["kind"] == "gold"
            assert loaded[0]["prompt"] == [{"role": "user", "content": "rank these"}]
        card = (tmp_path / fmt / "README.md").read_text()
        assert "- Rankings: 3, implying 12 pairs" in card and "- Ranking judgments: 6" in card
    # the comparisons export holds the same rankings expanded; its card counts them
    export = exporting.prepare_comparisons(
        session, project=project, spec=ComparisonExport(format="jsonl", test_fraction=0), secret_key="k"
    )
    exporting.write_directory(export, tmp_path / "pairs")
    pairs = datasets.load_dataset(str(tmp_path / "pairs"), cache_dir=str(tmp_path / "cache"))["train"]
    assert set(pairs["ranking_id"]) == {one.id, two.id, gold.id}
    assert {"prompt", "chosen", "rejected", "margin"} <= set(pairs.column_names)
    # R1: 6 pairs, R2: 2 (one split), gold: 3 pairs labelled by its known order
    assert pairs.num_rows == 6 + 2 + 3
    gold_rows = [r for r in pairs if r["ranking_id"] == gold.id]
    assert {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in gold_rows} == {
        ("g1", "g0"),
        ("g1", "g2"),
        ("g0", "g2"),
    }
    card = (tmp_path / "pairs" / "README.md").read_text()
    assert "- Rankings: 3, implying 12 pairs" in card


def test_rankings_of_versions_completions_feed_the_leaderboard(session: Session) -> None:
    from app.models import Completion
    from app.services.evaluation import leaderboard, version_games
    from tests.utils.factories import make_model_version

    project = make_project(session, "board")
    weak = make_model_version(session, "weak", project=project)
    mid = make_model_version(session, "mid", project=project, parent=weak)
    strong = make_model_version(session, "strong", project=project, parent=mid)
    raters = [make_user(session, f"rater{i}", Role.rater) for i in range(2)]
    for n in range(20):
        # four completions: strong, mid, weak and an imported one (no version: no games)
        ranking = make_ranking(session, project, f"prompt {n}", [f"s{n}", f"m{n}", f"w{n}", f"i{n}"])
        versions = [strong, mid, weak, None]
        for cid, version in zip(ranking.completion_ids, versions, strict=True):
            session.get(Completion, cid).model_version_id = version.id if version else None  # type: ignore[union-attr]
        # rater 0 always orders strong > mid > weak; rater 1 swaps mid and weak every other time
        rank(session, ranking, raters[0], [1, 2, 3, 4])
        rank(
            session, ranking, raters[1], [1, 3, 2, 4] if n % 2 else [1, 2, 3, 4], cutoff=0 if n == 0 else None
        )
    session.flush()
    games = version_games(session, project.id)
    assert len(games) == 40 * 3  # each ranking judgment: 3 pairs of different versions
    assert all(g.comparison_id == 0 and g.ranking_id for g in games)
    board = leaderboard(session, project.id, rounds=100)
    assert [row.model_version_id for row in board.rows] == [strong.id, mid.id, weak.id]
    top, middle, bottom = board.rows
    assert (top.wins, top.losses) == (80, 0)
    assert (middle.wins, middle.losses) == (40 - 10, 40 + 10)
    assert board.matrix_games[1][2] == 40 and board.matrix[1][2] == pytest.approx(30 / 40)
    assert leaderboard(session, project.id, source="ai", rounds=10).empty


def test_ranking_quality_on_hand_made_rankings(session: Session) -> None:
    from app.services.quality.rankings import ranking_quality

    project, raters, one, two = setup(session)
    gold = make_ranking(session, project, "gold one", ["g0", "g1", "g2"], gold_ranks=[2, 1, 3])
    rank(session, gold, raters[0], [1, 2, 3])
    quality = ranking_quality(session, project)
    assert (quality.rankings, quality.judgments, quality.units) == (3, 6, 2)
    assert quality.implied_pairs == 3 * 6 + 2 * 3 + 3
    # implied-pair votes: R1 (0,1) A A tie, (2,3) A A B, four pairs A A A; R2 (0,1) A B, two A A
    assert (quality.pairs.agreeing, quality.pairs.pairs) == (1 + 1 + 4 * 3 + 0 + 2, 3 + 3 + 4 * 3 + 3)
    # Kendall's tau-b: R1 identical orders 1; each against [1, 1, 3, 2] 3/sqrt(30); R2 1/3
    assert sorted(quality.taus) == pytest.approx(sorted([1.0, 3 / 30**0.5, 3 / 30**0.5, 1 / 3]))
    # Krippendorff's alpha, ordinal over the competition ranks of each judged completion
    krippendorff = pytest.importorskip("krippendorff")
    nan = float("nan")
    data = [
        [1, 2, 3, 4, 1, 2, 3],  # rater 0 on R1's four completions, then R2's three
        [1, 2, 3, 4, 2, 1, 3],
        [1, 1, 4, 3, nan, nan, nan],  # [1, 1, 3, 2] in competition form
    ]
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    assert quality.alpha_ordinal == pytest.approx(expected)
    # first-shown wins: rater 1 saw R1 in reverse, so its six A wins went to the later-shown
    by_name = {r.username: r for r in quality.raters}
    assert (by_name["rater0"].first_shown_wins, by_name["rater0"].non_tie) == (6 + 3 + 3, 12)
    assert (by_name["rater1"].first_shown_wins, by_name["rater1"].non_tie) == (0 + 2, 9)
    assert by_name["rater1"].first_shown_rate == pytest.approx(2 / 9)
    # gold: rater 0's [1, 2, 3] against the gold order g1 > g0 > g2 agrees on two pairs of three
    assert (quality.gold.agreeing, quality.gold.pairs) == (2, 3)
    assert by_name["rater0"].gold.rate == pytest.approx(2 / 3) and by_name["rater1"].gold.pairs == 0
    assert by_name["rater2"].mean_tau == pytest.approx(3 / 30**0.5)
