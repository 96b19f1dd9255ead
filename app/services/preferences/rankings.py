"""Rankings -> the pairs they imply -> votes for the one `decide` (rules.py).

A ranking shows K completions of one prompt (``completion_ids``, in stored order); a rater's
ranking judgment gives ``ranks`` aligned with them (1 = best, equal ranks = a tie) and an
optional cut-off ``cutoff_rank``: completions ranked below it (rank > cutoff_rank) are
unacceptable, 0 = all of them, None = no line. The rules, as the dataset card states them:

**Expansion** (`expand`). Every two positions i < j of ``completion_ids`` are one implied pair,
completion A = ``completion_ids[i]``, B = ``completion_ids[j]``; one ranking of K gives
K(K-1)/2 pairs.

* *choice*: the better-ranked side; equal ranks are a tie (strength 0).
* *strength*: the number of rank levels between the two (levels are the distinct ranks, so
  ranks 1, 1, 3 and 1, 1, 2 are the same order), capped at 2 to stay on the pairs' scale:
  adjacent levels = 1 (better), two or more levels apart = 2 (much better).
* *the cut-off*: a completion above the line beats every one below it, with strength 2 (an
  acceptable answer is much better than an unacceptable one) whatever their rank gap; a pair
  with both completions below the line is a *both bad* vote, dropped unless
  ``include_both_bad`` is set, exactly as a pair judgment marked both bad.
* *a_on_left*: A was shown before B in this rater's display order (position bias is "first
  shown wins").
* *time_spent_ms*: the judgment's time shared evenly among its pairs.

**Aggregation** (`decide_ranking`). The votes of all raters on one implied pair (the same
ranking, the same two positions) are one unit for `decide`, so ``majority``,
``mean_strength``, ``per_rater``, ``ties`` and ``min_agreement`` act on implied pairs exactly as
on pairs. A gold ranking's known order, expanded the same way, is the pair's known answer
(``gold_choice``; equal gold ranks = a tie).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from app.services.preferences.rules import PreferenceRow, PreferenceStats, RuleSet, Vote, decide

MIN_K, MAX_K = 2, 64  # what `expand` accepts; projects rank 3..9
MAX_STRENGTH = 2  # the pairs' strength scale is 0..2


class RankingError(ValueError):
    """Ranks or a cut-off that do not describe an order of the ranking's completions."""


@dataclass(frozen=True, slots=True)
class ImpliedPair:
    """One pair implied by a ranking: positions ``i < j`` of ``completion_ids`` (A = i, B = j)."""

    i: int
    j: int
    choice: str  # "A" | "B" | "tie"
    strength: int  # 0 for a tie, else 1..2
    both_bad: bool  # both below the cut-off


def check_ranking(ranks: Sequence[int], cutoff_rank: int | None, k: int | None = None) -> None:
    """Raise `RankingError` naming the problem unless `ranks` (and the cut-off) are a ranking."""
    if k is not None and len(ranks) != k:
        raise RankingError(f"ranks: {len(ranks)} ranks for {k} completions")
    if not MIN_K <= len(ranks) <= MAX_K:
        raise RankingError(f"ranks: a ranking orders {MIN_K} to {MAX_K} completions, not {len(ranks)}")
    for position, rank in enumerate(ranks):
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= len(ranks):
            raise RankingError(f"ranks[{position}]: {rank!r} is not a rank from 1 to {len(ranks)}")
    if cutoff_rank is None:
        return
    if (
        isinstance(cutoff_rank, bool)
        or not isinstance(cutoff_rank, int)
        or not 0 <= cutoff_rank <= len(ranks)
    ):
        raise RankingError(f"cutoff_rank: {cutoff_rank!r} is not a rank from 0 to {len(ranks)}")


def expand(
    ranks: Sequence[int], cutoff_rank: int | None = None, display_order: Sequence[int] | None = None
) -> list[tuple[ImpliedPair, bool]]:
    """The implied pairs of one ranking judgment, in (i, j) order, each with ``a_on_left``
    (True when no display order is known)."""
    check_ranking(ranks, cutoff_rank)
    k = len(ranks)
    level = {rank: n for n, rank in enumerate(sorted(set(ranks)))}
    shown_at = (
        {position: n for n, position in enumerate(display_order)} if display_order is not None else None
    )
    if shown_at is not None and sorted(shown_at) != list(range(k)):
        raise RankingError(f"display_order: {list(display_order or [])} is not an order of {k} positions")
    below = [cutoff_rank is not None and rank > cutoff_rank for rank in ranks]
    pairs: list[tuple[ImpliedPair, bool]] = []
    for i in range(k):
        for j in range(i + 1, k):
            gap = level[ranks[j]] - level[ranks[i]]
            if below[i] != below[j]:  # the line lies between their ranks
                choice, strength = ("A" if below[j] else "B"), MAX_STRENGTH
            elif gap == 0:
                choice, strength = "tie", 0
            else:
                choice, strength = ("A" if gap > 0 else "B"), min(abs(gap), MAX_STRENGTH)
            a_on_left = shown_at is None or shown_at[i] < shown_at[j]
            pairs.append((ImpliedPair(i, j, choice, strength, below[i] and below[j]), a_on_left))
    return pairs


def gold_choices(gold_ranks: Sequence[int] | None) -> dict[tuple[int, int], str]:
    """(i, j) -> the known answer of each pair a gold ranking implies (empty without gold)."""
    if gold_ranks is None:
        return {}
    return {(p.i, p.j): p.choice for p, _ in expand(gold_ranks)}


@dataclass(slots=True)
class RankingVote:
    """One rater's ranking judgment, as read for the rules."""

    judgment_id: int
    rater_id: int
    ranks: list[int]
    cutoff_rank: int | None
    display_order: list[int] | None
    source: str
    time_spent_ms: int
    created_at: datetime


def implied_votes(judgment: RankingVote) -> dict[tuple[int, int], Vote]:
    """(i, j) -> the vote one ranking judgment casts on that implied pair."""
    pairs = expand(judgment.ranks, judgment.cutoff_rank, judgment.display_order)
    share = judgment.time_spent_ms // len(pairs) if pairs else 0
    return {
        (pair.i, pair.j): Vote(
            judgment.judgment_id,
            judgment.rater_id,
            pair.choice,
            pair.strength,
            pair.both_bad,
            [],
            "",
            share,
            a_on_left,
            judgment.source,
            judgment.created_at,
        )  # fmt: skip
        for pair, a_on_left in pairs
    }


def decide_ranking(
    judgments: Sequence[RankingVote],
    *,
    completion_ids: Sequence[int],
    rules: RuleSet,
    stats: PreferenceStats,
    ranking_id: int,
    prompt_id: int,
    kind: str = "regular",
    gold_ranks: Sequence[int] | None = None,
) -> list[PreferenceRow]:
    """The rows of one ranking: its judgments expanded, each implied pair decided by `decide`.

    Rows come in (i, j) order, then judgment order for ``per_rater``; each carries
    ``ranking_id``, ``pair`` (i, j) and ``completion_ids`` (A, B), texts not yet attached.
    """
    k = len(completion_ids)
    stats.rankings_read += 1
    by_pair: dict[tuple[int, int], list[Vote]] = {}
    for judgment in judgments:
        check_ranking(judgment.ranks, judgment.cutoff_rank, k)
        for key, vote in implied_votes(judgment).items():
            by_pair.setdefault(key, []).append(vote)
    gold = gold_choices(gold_ranks) if kind != "regular" else {}
    rows: list[PreferenceRow] = []
    for (i, j), votes in sorted(by_pair.items()):
        stats.implied_pairs += 1
        decided = decide(
            votes,
            rules=rules,
            stats=stats,
            comparison_id=0,
            prompt_id=prompt_id,
            kind=kind,
            gold_choice=gold.get((i, j)),
        )
        for row in decided:
            row.ranking_id, row.pair = ranking_id, (i, j)
            row.completion_ids = (completion_ids[i], completion_ids[j])
        rows += decided
    return rows
