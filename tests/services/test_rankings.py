"""The expansion rules of rankings on hand-made rankings: ties, cut-offs, display order, and
per-rater and majority aggregation through the one `decide`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.services.preferences.rankings import (
    RankingError,
    RankingVote,
    decide_ranking,
    expand,
    gold_choices,
)
from app.services.preferences.rules import PreferenceStats, RuleSet

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def pairs_of(ranks: list[int], cutoff: int | None = None) -> dict[tuple[int, int], tuple[str, int, bool]]:
    return {(p.i, p.j): (p.choice, p.strength, p.both_bad) for p, _ in expand(ranks, cutoff)}


def test_a_strict_order_gives_every_pair_with_the_gap_capped_at_two() -> None:
    # completion 0 is 3rd, 1 is 1st, 2 is 4th, 3 is 2nd: order 1, 3, 0, 2
    assert pairs_of([3, 1, 4, 2]) == {
        (0, 1): ("B", 2, False),  # 1st beats 3rd: two levels
        (0, 2): ("A", 1, False),  # 3rd beats 4th: adjacent
        (0, 3): ("B", 1, False),
        (1, 2): ("A", 2, False),  # gap 3, capped
        (1, 3): ("A", 1, False),
        (2, 3): ("B", 2, False),
    }


def test_ties_are_ties_and_levels_not_rank_numbers_measure_the_gap() -> None:
    dense = pairs_of([1, 1, 2, 3])
    competition = pairs_of([1, 1, 3, 4])  # the same order written with skipped ranks
    assert dense == competition
    assert dense[(0, 1)] == ("tie", 0, False)
    assert dense[(0, 2)] == ("A", 1, False)
    assert dense[(1, 3)] == ("A", 2, False)
    assert len(dense) == 6  # K(K-1)/2


def test_the_cut_off_makes_above_beat_below_clearly_and_below_pairs_both_bad() -> None:
    # ranks 1, 2 above the line; 3, 4 below (cutoff_rank 2)
    pairs = pairs_of([2, 3, 1, 4], cutoff=2)
    assert pairs[(0, 1)] == ("A", 2, False)  # adjacent ranks across the line: strength 2
    assert pairs[(0, 2)] == ("B", 1, False)  # both acceptable: the gap
    assert pairs[(1, 3)] == ("A", 1, True)  # both below: a both-bad vote
    assert pairs[(2, 3)] == ("A", 2, False)
    everything_bad = pairs_of([1, 2, 3], cutoff=0)
    assert all(both_bad for _, _, both_bad in everything_bad.values())
    assert pairs_of([1, 2, 3], cutoff=3) == pairs_of([1, 2, 3])  # a line under everything
    tied_below = pairs_of([1, 2, 2], cutoff=1)
    assert tied_below[(1, 2)] == ("tie", 0, True)


def test_display_order_says_which_completion_was_shown_first() -> None:
    shown = expand([1, 2, 3], None, display_order=[2, 0, 1])  # position 2 first, then 0, then 1
    assert {(p.i, p.j): a_on_left for p, a_on_left in shown} == {(0, 1): True, (0, 2): False, (1, 2): False}


@pytest.mark.parametrize(
    ("ranks", "cutoff", "display", "message"),
    [
        ([1, 2], None, None, None),
        ([1], None, None, "2 to 64"),
        ([1, 0, 2], None, None, "ranks[1]"),
        ([1, 4, 2], None, None, "ranks[1]"),
        ([1, True, 2], None, None, "ranks[1]"),
        ([1, 2, 3], 4, None, "cutoff_rank"),
        ([1, 2, 3], -1, None, "cutoff_rank"),
        ([1, 2, 3], None, [0, 0, 1], "display_order"),
        ([1, 2, 3], None, [0, 1], "display_order"),
    ],
)
def test_bad_rankings_are_refused_naming_the_field(ranks, cutoff, display, message) -> None:
    if message is None:
        expand(ranks, cutoff, display)
        return
    with pytest.raises(RankingError, match=message.replace("[", r"\[").replace("]", r"\]")):
        expand(ranks, cutoff, display)


def judgment(jid: int, rater: int, ranks: list[int], cutoff: int | None = None) -> RankingVote:
    return RankingVote(jid, rater, ranks, cutoff, list(range(len(ranks))), "human", 6000, WHEN)


IDS = [101, 102, 103]  # completion ids of positions 0, 1, 2


def rows_of(judgments: list[RankingVote], rules: RuleSet, **kw) -> tuple[list, PreferenceStats]:
    stats = PreferenceStats()
    rows = decide_ranking(
        judgments, completion_ids=IDS, rules=rules, stats=stats, ranking_id=7, prompt_id=3, **kw
    )
    return rows, stats


def summary(rows) -> list[tuple]:
    return [
        (r.pair, r.completion_ids, r.winner, round(r.margin, 4), round(r.agreement, 4), r.votes) for r in rows
    ]


def test_per_rater_rows_are_each_raters_implied_pairs_without_ties() -> None:
    rows, stats = rows_of(
        [judgment(1, 10, [1, 2, 3]), judgment(2, 11, [2, 1, 1])], RuleSet(aggregation="per_rater")
    )
    assert [(r.pair, r.winner, r.margin, r.votes_used[0].rater_id) for r in rows] == [
        ((0, 1), "A", 1.0, 10),
        ((0, 1), "B", 1.0, 11),
        ((0, 2), "A", 2.0, 10),
        ((0, 2), "B", 1.0, 11),
        ((1, 2), "A", 1.0, 10),  # rater 11 tied 1 and 2: no row
    ]
    assert all(r.ranking_id == 7 and r.comparison_id == 0 for r in rows)
    assert stats.rankings_read == 1 and stats.implied_pairs == 3 and stats.dropped["tie_votes"] == 1
    assert rows[0].votes_used[0].time_spent_ms == 2000  # 6 s over 3 pairs


def test_majority_decides_each_implied_pair_across_raters() -> None:
    judgments = [judgment(1, 10, [1, 2, 3]), judgment(2, 11, [1, 3, 2]), judgment(3, 12, [2, 1, 3])]
    rows, stats = rows_of(judgments, RuleSet(aggregation="majority"))
    assert summary(rows) == [
        ((0, 1), (101, 102), "A", 1.0, round(2 / 3, 4), 3),
        ((0, 2), (101, 103), "A", round(4 / 3, 4), 1.0, 3),
        ((1, 2), (102, 103), "A", 1.0, round(2 / 3, 4), 3),
    ]
    by_pair = {r.pair: r for r in rows}
    # pair (0, 2): raters 10 (gap 2), 11 (gap 1), 12 (gap 1) all prefer 0
    assert by_pair[(0, 2)].agreement == 1.0 and by_pair[(0, 2)].margin == pytest.approx(4 / 3)
    # pair (0, 1): 10 and 11 prefer 0 (gaps 1 and 2), 12 prefers 1 (gap 1)
    assert by_pair[(0, 1)].winner == "A" and by_pair[(0, 1)].agreement == pytest.approx(2 / 3)
    assert by_pair[(0, 1)].margin == pytest.approx(2 / 3 * 1.5)
    # pair (1, 2): 10 and 12 prefer 1 (gaps 1 and 2), 11 prefers 2 (gap 1)
    assert by_pair[(1, 2)].winner == "A" and by_pair[(1, 2)].margin == pytest.approx(2 / 3 * 1.5)
    assert stats.implied_pairs == 3


def test_majority_drops_split_pairs_and_both_bad_votes_like_pairs() -> None:
    judgments = [judgment(1, 10, [1, 2, 3], cutoff=1), judgment(2, 11, [1, 3, 2], cutoff=1)]
    rows, stats = rows_of(judgments, RuleSet(aggregation="majority"))
    # (1, 2) is below the line for both raters: both-bad votes, dropped; (0, 1) and (0, 2) cross it
    assert summary(rows) == [((0, 1), (101, 102), "A", 2.0, 1.0, 2), ((0, 2), (101, 103), "A", 2.0, 1.0, 2)]
    assert stats.dropped["both_bad"] == 2
    kept, _ = rows_of(judgments, RuleSet(aggregation="majority", include_both_bad=True))
    # with both-bad votes kept, (1, 2) is one vote each way: a split, dropped
    assert [r.pair for r in kept] == [(0, 1), (0, 2)]
    one_rater, _ = rows_of(judgments[:1], RuleSet(aggregation="majority", include_both_bad=True))
    assert summary(one_rater)[-1] == ((1, 2), (102, 103), "A", 1.0, 1.0, 1)


def test_ties_lower_agreement_or_are_ignored_as_the_rules_say() -> None:
    judgments = [judgment(1, 10, [1, 1, 2]), judgment(2, 11, [1, 2, 3])]
    rows, _ = rows_of(judgments, RuleSet(aggregation="majority"))
    by_pair = {r.pair: r for r in rows}
    assert by_pair[(0, 1)].agreement == 0.5 and by_pair[(0, 1)].winner == "A"
    ignored, stats = rows_of(judgments, RuleSet(aggregation="majority", ties="ignore"))
    assert {r.pair: r.agreement for r in ignored}[(0, 1)] == 1.0
    assert stats.dropped["tie_votes"] == 1
    # with one rater's tie alone, the pair is a tie: no row
    alone, stats = rows_of(judgments[:1], RuleSet(aggregation="majority"))
    assert [r.pair for r in alone] == [(0, 2), (1, 2)] and stats.dropped["tie"] == 1


def test_a_gold_ranking_labels_its_pairs_against_the_votes() -> None:
    assert gold_choices([2, 1, 3]) == {(0, 1): "B", (0, 2): "A", (1, 2): "A"}
    judgments = [judgment(1, 10, [1, 2, 3])]  # disagrees with gold on (0, 1)
    rows, _ = rows_of(judgments, RuleSet(aggregation="majority"), kind="gold", gold_ranks=[2, 1, 3])
    by_pair = {r.pair: r for r in rows}
    assert by_pair[(0, 1)].winner == "B" and by_pair[(0, 1)].agreement == 0.0 and by_pair[(0, 1)].margin == 0
    assert by_pair[(0, 2)].winner == "A" and by_pair[(0, 2)].agreement == 1.0


def test_judgments_with_the_wrong_number_of_ranks_are_refused() -> None:
    with pytest.raises(RankingError, match="4 ranks for 3 completions"):
        rows_of([judgment(1, 10, [1, 2, 3, 4])], RuleSet())
