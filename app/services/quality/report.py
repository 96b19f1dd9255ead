"""The label-quality report of a project: human agreement (percent, Krippendorff's alpha),
gold accuracy, vote shares, every rater, the AI judges against humans, and label length bias.

The figures are defined in `app.services.quality.common`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import app.services.quality.agreement as agreement
from app.models import ComparisonTally, Judgment, JudgmentSource, Project, RaterTally, User
from app.services.evaluation.length_bias import LabelLengthBias, label_length_bias
from app.services.quality.agreement import Histogram, PairCounts
from app.services.quality.common import (
    _AI,
    NOMINAL,
    SIGNED_VALUES,
    _j,
    _VoteShares,
)
from app.services.quality.raters import SIGNED_COLUMNS, RaterQuality, rater_report


@dataclass(frozen=True)
class AgreementSummary:
    """Agreement among human raters over the comparisons with two or more votes."""

    units: int  # comparisons with >= 2 human votes
    votes: int  # human votes on those comparisons
    pairs: PairCounts  # pairs of votes on the same comparison (choice A/B/tie)
    alpha_ordinal: float | None  # over the signed strength -2..2
    alpha_nominal: float | None  # over A/B/tie
    alpha_interval: float | None  # over the signed strength, as numbers

    @property
    def percent(self) -> float | None:
        return self.pairs.rate


@dataclass(frozen=True)
class JudgeQuality:
    """An AI judge's agreement with humans, beside the humans' agreement on the same pairs."""

    judge_id: int
    username: str
    judgments: int
    runs: int
    shared_comparisons: int  # comparisons the judge and at least one human labeled
    with_humans: PairCounts  # (judge vote, human vote) pairs on shared comparisons
    human_human: PairCounts  # human-human pairs on the comparisons the judge labeled

    @property
    def agreement(self) -> float | None:
        return self.with_humans.rate

    @property
    def human_agreement(self) -> float | None:
        return self.human_human.rate


@dataclass
class ProjectQuality(_VoteShares):
    project: Project
    human_judgments: int
    ai_judgments: int
    agreement: AgreementSummary
    gold: PairCounts  # (correct, judged) over human gold judgments
    non_tie: int
    left: int
    ties: int
    both_bad: int
    flagged: int
    values: dict[int, int]
    raters: list[RaterQuality]
    judges: list[JudgeQuality]
    length_bias: LabelLengthBias | None = None

    @property
    def empty(self) -> bool:
        return self.human_judgments == 0 and self.ai_judgments == 0

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold.rate

    @property
    def judgments(self) -> int:  # the human ones: what the shares of `_VoteShares` divide
        return self.human_judgments

    @property
    def outliers(self) -> list[RaterQuality]:
        return [r for r in self.raters if r.outliers]

    @property
    def longer_wins_rate(self) -> float | None:
        return self.length_bias.longer_wins_rate if self.length_bias is not None else None


def _signed_histograms(session: Session, project_id: int) -> list[tuple[Histogram, int]]:
    """Distinct histograms of signed human votes over comparisons with >= 2 votes, with counts
    (from the comparison tallies)."""
    t = ComparisonTally
    columns = [getattr(t, column) for column in SIGNED_COLUMNS]
    query = (
        select(*columns, func.count())
        .where(t.project_id == project_id, t.source == JudgmentSource.human.value, t.votes >= 2)
        .group_by(*columns)
        .order_by(*columns)  # a fixed order: alpha's float sums come out the same every time
    )
    result: list[tuple[Histogram, int]] = []
    for row in session.execute(query):
        hist: Histogram = tuple((v, int(n)) for v, n in zip(SIGNED_VALUES, row[:-1], strict=True) if n)
        result.append((hist, int(row[-1])))
    return result


def agreement_summary(histograms: Sequence[tuple[Histogram, int]]) -> AgreementSummary:
    nominal = [(agreement.collapse(h, NOMINAL), m) for h, m in histograms]
    return AgreementSummary(
        units=sum(m for _, m in histograms),
        votes=sum(m * sum(c for _, c in h) for h, m in histograms),
        pairs=agreement.pair_counts(nominal),
        alpha_ordinal=agreement.alpha_from_histograms(histograms, "ordinal"),
        alpha_nominal=agreement.alpha_from_histograms(nominal, "nominal"),
        alpha_interval=agreement.alpha_from_histograms(histograms, "interval"),
    )


def _judges(session: Session, project_id: int) -> list[JudgeQuality]:
    # The judges are the raters with AI tallies here: their votes are read through the rater
    # index rather than by scanning the project's judgments.
    judge_ids = session.scalars(
        select(RaterTally.rater_id).where(
            RaterTally.project_id == project_id,
            RaterTally.source == JudgmentSource.ai.value,
            RaterTally.judgments > 0,
        )
    ).all()
    if not judge_ids:
        return []
    judge_rows = session.execute(
        select(_j.rater_id, func.count(), func.count(func.distinct(_j.run_id)))
        .where(_j.rater_id.in_(judge_ids), _j.project_id == project_id, _AI)
        .group_by(_j.rater_id)
    ).all()
    if not judge_rows:
        return []
    names = dict(
        session.execute(select(User.id, User.username).where(User.id.in_([r[0] for r in judge_rows]))).all()
    )
    # Each AI vote with the human tally of its comparison; equal combinations are counted once.
    units = (
        select(ComparisonTally.comparison_id, ComparisonTally.a, ComparisonTally.b, ComparisonTally.tie)
        .where(
            ComparisonTally.project_id == project_id,
            ComparisonTally.source == JudgmentSource.human.value,
            ComparisonTally.votes > 0,
        )
        .subquery()
    )
    ai = Judgment.__table__.alias("ai")
    with_humans: dict[int, PairCounts] = {}
    shared: Counter[int] = Counter()
    human_pairs: dict[int, list[tuple[Histogram, int]]] = {}
    for rid, choice, a, b, tie, n in session.execute(
        select(ai.c.rater_id, ai.c.choice, units.c.a, units.c.b, units.c.tie, func.count())
        .select_from(ai.join(units, units.c.comparison_id == ai.c.comparison_id))
        .where(
            ai.c.rater_id.in_(judge_ids),
            ai.c.project_id == project_id,
            ai.c.source == JudgmentSource.ai.value,
        )
        .group_by(ai.c.rater_id, ai.c.choice, units.c.a, units.c.b, units.c.tie)
    ):
        tally = {"A": int(a), "B": int(b), "tie": int(tie)}
        votes, n = sum(tally.values()), int(n)
        shared[rid] += n
        with_humans[rid] = with_humans.get(rid, PairCounts()) + PairCounts(n * tally[str(choice)], n * votes)
        if votes >= 2:
            hist = tuple((k, c) for k, c in tally.items() if c)
            human_pairs.setdefault(rid, []).append((hist, n))
    judges = [
        JudgeQuality(
            judge_id=rid,
            username=names.get(rid, f"user {rid}"),
            judgments=int(n),
            runs=int(runs),
            shared_comparisons=shared.get(rid, 0),
            with_humans=with_humans.get(rid, PairCounts()),
            human_human=agreement.pair_counts(human_pairs.get(rid, [])),
        )
        for rid, n, runs in judge_rows
    ]
    return sorted(judges, key=lambda j: j.username)


def project_quality(session: Session, project: Project, *, with_length_bias: bool = True) -> ProjectQuality:
    raters = rater_report(session, project)
    ai_judgments = session.scalar(
        select(func.sum(RaterTally.judgments)).where(
            RaterTally.project_id == project.id, RaterTally.source == JudgmentSource.ai.value
        )
    )
    histograms = _signed_histograms(session, project.id) if raters else []
    values = Counter[int]()
    for rater in raters:
        values.update(rater.values)
    return ProjectQuality(
        project=project,
        human_judgments=sum(r.judgments for r in raters),
        ai_judgments=int(ai_judgments or 0),
        agreement=agreement_summary(histograms),
        gold=PairCounts(sum(r.gold_correct for r in raters), sum(r.gold_judgments for r in raters)),
        non_tie=sum(r.non_tie for r in raters),
        left=sum(r.left for r in raters),
        ties=sum(r.ties for r in raters),
        both_bad=sum(r.both_bad for r in raters),
        flagged=sum(r.flagged for r in raters),
        values={v: values.get(v, 0) for v in SIGNED_VALUES},
        raters=raters,
        judges=_judges(session, project.id),
        length_bias=label_length_bias(session, project.id) if with_length_bias else None,
    )
