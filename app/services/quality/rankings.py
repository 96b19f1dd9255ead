"""Label quality of a project's rankings: agreement, Krippendorff's alpha, Kendall's tau between
raters, "first-shown wins" and gold accuracy, per project and per rater.

Human ranking judgments only, read once as narrow columns (a ranking judgment is K ranks, K times
fewer rows than the pairs it implies). The definitions, beside the pairs' (common.py):

* *Agreement* (percent): each implied pair of a ranking (rankings.py in services/preferences:
  the better-ranked side wins, equal ranks tie, above the all-bad line beats below) is a unit, its
  votes the raters' A/B/tie on it; agreement is the share of agreeing vote pairs, as for pairs.
  A rater's agreement is over the vote pairs that include one of their votes.
* *Krippendorff's alpha*, ordinal over ranks: a unit is one completion of a ranking judged by two
  raters or more, its values the ranks they gave it, in competition form (1 + the number of
  completions ranked strictly better, so ties and skipped numbers read the same).
* *Kendall's tau-b* between raters: for every two raters of the same ranking, tau-b of their
  ranks (None when either tied everything); reported as the mean over those rater pairs, and per
  rater over the pairs that include them.
* *First-shown wins* (position bias): of a rater's non-tie implied pairs, the share won by the
  completion shown first of the two in their display order; tested with the exact two-sided
  binomial test against 0.5.
* *Gold accuracy*: over the implied pairs of judgments on gold rankings, the share whose choice
  equals the pair the gold order implies (a gold tie must be answered with a tie): the pairwise
  agreement with the gold order.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

import app.services.quality.agreement as agreement
from app.models import ComparisonKind, JudgmentSource, Project, Ranking, RankingJudgment, User
from app.services.preferences.rankings import RankingError, check_ranking, expand, gold_choices
from app.services.quality.agreement import Histogram, PairCounts
from app.services.quality.raters import POSITION_MIN_VOTES, POSITION_P_VALUE


@dataclass
class RankingRaterQuality:
    rater_id: int
    username: str
    rankings: int = 0
    implied_pairs: int = 0
    non_tie: int = 0
    first_shown_wins: int = 0
    gold: PairCounts = field(default_factory=PairCounts)
    agreement: PairCounts = field(default_factory=PairCounts)
    taus: list[float] = field(default_factory=list)

    @property
    def first_shown_rate(self) -> float | None:
        return self.first_shown_wins / self.non_tie if self.non_tie else None

    @property
    def first_shown_p_value(self) -> float | None:
        return agreement.binomial_test(self.first_shown_wins, self.non_tie) if self.non_tie else None

    @property
    def position_biased(self) -> bool:
        """The outlier rule of pairs (raters.py), on first-shown wins."""
        p = self.first_shown_p_value
        return self.non_tie >= POSITION_MIN_VOTES and p is not None and p < POSITION_P_VALUE

    @property
    def mean_tau(self) -> float | None:
        return sum(self.taus) / len(self.taus) if self.taus else None


@dataclass
class RankingQuality:
    rankings: int  # rankings with at least one human judgment
    judgments: int
    implied_pairs: int  # over all judgments
    units: int  # rankings with two or more human judgments
    pairs: PairCounts  # agreeing vote pairs on implied pairs
    alpha_ordinal: float | None
    taus: list[float]
    gold: PairCounts
    non_tie: int
    first_shown_wins: int
    raters: list[RankingRaterQuality]

    @property
    def empty(self) -> bool:
        return self.judgments == 0

    @property
    def percent(self) -> float | None:
        return self.pairs.rate

    @property
    def mean_tau(self) -> float | None:
        return sum(self.taus) / len(self.taus) if self.taus else None

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold.rate

    @property
    def first_shown_rate(self) -> float | None:
        return self.first_shown_wins / self.non_tie if self.non_tie else None


def ranking_quality(session: Session, project: Project) -> RankingQuality:
    """The rankings section of the label-quality report (module docstring)."""
    j, r = RankingJudgment, Ranking
    rows = session.execute(
        select(j.ranking_id, j.rater_id, j.ranks, j.cutoff_rank, j.display_order, r.kind, r.gold_ranks)
        .join(r, r.id == j.ranking_id)
        .where(j.project_id == project.id, j.source == JudgmentSource.human)
        .order_by(j.ranking_id, j.id)
    ).all()
    raters: dict[int, RankingRaterQuality] = {}
    rank_units: list[tuple[Histogram, int]] = []
    pair_units: list[tuple[Histogram, int]] = []
    taus: list[float] = []
    judged = 0
    units = 0
    for _, group in itertools.groupby(rows, key=lambda row: row[0]):
        votes = []
        for _, rater_id, ranks, cutoff, display, kind, gold_ranks in group:
            try:
                check_ranking(ranks, cutoff)
                pairs = expand(ranks, cutoff, display)
            except RankingError:
                continue  # a stored row that is not a ranking gives no figures
            stats = raters.setdefault(rater_id, RankingRaterQuality(rater_id, ""))
            stats.rankings += 1
            stats.implied_pairs += len(pairs)
            gold = gold_choices(gold_ranks) if kind == ComparisonKind.gold and gold_ranks else {}
            choices = {}
            for pair, a_on_left in pairs:
                choices[(pair.i, pair.j)] = pair.choice
                if pair.choice != "tie":
                    stats.non_tie += 1
                    stats.first_shown_wins += (pair.choice == "A") == a_on_left
                if (pair.i, pair.j) in gold:
                    stats.gold += PairCounts(int(gold[(pair.i, pair.j)] == pair.choice), 1)
            votes.append((rater_id, agreement.competition_ranks(ranks), choices))
        judged += bool(votes)
        if len(votes) < 2:
            continue
        units += 1
        k = len(votes[0][1])
        votes = [v for v in votes if len(v[1]) == k]
        for position in range(k):
            rank_units.append((agreement.histogram(v[1][position] for v in votes), 1))
        for key in votes[0][2]:
            pair_units.append((agreement.histogram(v[2][key] for v in votes), 1))
        for (ra, xa, ca), (rb, xb, cb) in itertools.combinations(votes, 2):
            tau = agreement.kendall_tau_b(xa, xb)
            if tau is not None:
                taus.append(tau)
                raters[ra].taus.append(tau)
                raters[rb].taus.append(tau)
            same = sum(ca[key] == cb[key] for key in ca)
            raters[ra].agreement += PairCounts(same, len(ca))
            raters[rb].agreement += PairCounts(same, len(ca))
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(list(raters)))).all())
    for rater_id, stats in raters.items():
        stats.username = names.get(rater_id, f"user {rater_id}")
    by_name = sorted(raters.values(), key=lambda s: s.username)
    return RankingQuality(
        rankings=judged,
        judgments=sum(s.rankings for s in by_name),
        implied_pairs=sum(s.implied_pairs for s in by_name),
        units=units,
        pairs=agreement.pair_counts(_merge(pair_units)),
        alpha_ordinal=agreement.alpha_from_histograms(_merge(rank_units), "ordinal"),
        taus=taus,
        gold=sum((s.gold for s in by_name), PairCounts()),
        non_tie=sum(s.non_tie for s in by_name),
        first_shown_wins=sum(s.first_shown_wins for s in by_name),
        raters=by_name,
    )


def _merge(units: list[tuple[Histogram, int]]) -> list[tuple[Histogram, int]]:
    """Equal histograms counted once with their multiplicity (what the arithmetic expects)."""
    counts: Counter[Histogram] = Counter()
    for hist, n in units:
        counts[hist] += n
    return list(counts.items())
