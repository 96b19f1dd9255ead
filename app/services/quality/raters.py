"""Per-rater quality of a project: volumes, rates, position bias, gold accuracy, agreement,
the rules that flag a rater as an outlier, and pausing a rater.

The figures are defined in `app.services.quality.common`.

**Outliers** (a rater is highlighted for each rule that fires; none fires on too little data):

* position bias: at least `POSITION_MIN_VOTES` non-tie judgments and a binomial p-value below
  `POSITION_P_VALUE`;
* gold accuracy: at least `GOLD_MIN_JUDGMENTS` gold judgments, and an accuracy at least
  `GOLD_GAP` below the pooled gold accuracy of the other raters (who together need at least
  `GOLD_MIN_JUDGMENTS` gold judgments);
* agreement: at least `AGREEMENT_MIN_PAIRS` vote pairs shared with others, and an agreement at
  least `AGREEMENT_GAP` below the agreement among the other raters (the pairs of votes that do
  not involve this rater, at least `AGREEMENT_MIN_PAIRS` of them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import (
    Comparison,
    ComparisonKind,
    Judgment,
    JudgmentSource,
    Project,
    RaterFlagTally,
    RaterHour,
    RaterPairTally,
    RaterTally,
    Role,
    User,
)
from app.services.quality.agreement import PairCounts
from app.services.quality.common import (
    _HUMAN,
    SIGNED_VALUES,
    QualityError,
    _analytics,
    _c,
    _count_if,
    _j,
    _rate,
    _VoteShares,
)
from app.services.stats import project_judgment_counts, project_median_seconds

SIGNED_COLUMNS = ("s_m2", "s_m1", "s_0", "s_p1", "s_p2")  # the tallies' columns of SIGNED_VALUES

POSITION_MIN_VOTES = 30
POSITION_P_VALUE = 0.01
GOLD_MIN_JUDGMENTS = 10
GOLD_GAP = 0.20
AGREEMENT_MIN_PAIRS = 20
AGREEMENT_GAP = 0.20


@dataclass
class RaterQuality(_VoteShares):
    rater_id: int
    username: str
    role: str
    is_active: bool
    is_paused: bool
    judgments: int
    ties: int
    both_bad: int
    non_tie: int
    left: int
    gold_judgments: int
    gold_correct: int
    active_hours: int
    first_at: datetime | None
    last_at: datetime | None
    values: dict[int, int]  # signed strength -> judgments
    flagged: int = 0
    flag_counts: dict[str, int] = field(default_factory=dict)
    median_seconds: float | None = None
    agreement: PairCounts = PairCounts()
    others_agreement: PairCounts = PairCounts()  # pairs of votes not involving this rater
    others_gold: PairCounts = PairCounts()  # other raters' gold judgments (correct, total)
    outliers: list[str] = field(default_factory=list)

    @property
    def gold_accuracy(self) -> float | None:
        return _rate(self.gold_correct, self.gold_judgments)

    @property
    def agreement_rate(self) -> float | None:
        return self.agreement.rate

    @property
    def throughput(self) -> float | None:
        """Judgments per active hour."""
        return _rate(self.judgments, self.active_hours)

    @property
    def position_biased(self) -> bool:
        p = self.left_p_value
        return self.non_tie >= POSITION_MIN_VOTES and p is not None and p < POSITION_P_VALUE

    @property
    def gold_outlier(self) -> bool:
        mine, others = self.gold_accuracy, self.others_gold.rate
        return (
            self.gold_judgments >= GOLD_MIN_JUDGMENTS
            and self.others_gold.pairs >= GOLD_MIN_JUDGMENTS
            and mine is not None
            and others is not None
            and mine <= others - GOLD_GAP + 1e-12
        )

    @property
    def agreement_outlier(self) -> bool:
        mine, others = self.agreement.rate, self.others_agreement.rate
        return (
            self.agreement.pairs >= AGREEMENT_MIN_PAIRS
            and self.others_agreement.pairs >= AGREEMENT_MIN_PAIRS
            and mine is not None
            and others is not None
            and mine <= others - AGREEMENT_GAP + 1e-12
        )


def _rater_rows(session: Session, project_id: int) -> list[RaterQuality]:
    """Counts per human rater of the project, from the tallies the database keeps
    (app/models/tallies.py); gold (few pairs), first and last judgment (two index probes per
    rater) and names are read as they stand."""
    t = RaterTally
    counts = session.execute(
        select(
            t.rater_id,
            t.judgments,
            t.ties,
            t.both_bad,
            t.non_tie,
            t.left_picks,
            *[getattr(t, column) for column in SIGNED_COLUMNS],
        ).where(t.project_id == project_id, t.source == JudgmentSource.human.value, t.judgments > 0)
    ).all()
    if not counts:
        return []
    rater_ids = [row[0] for row in counts]
    # Gold pairs are few: read through the (comparison, rater) index from the gold comparisons.
    gold = {
        rid: (int(n), int(correct))
        for rid, n, correct in session.execute(
            select(_j.rater_id, func.count(), _count_if(_j.choice == _c.gold_choice))
            .select_from(Comparison.__table__.join(Judgment.__table__, _j.comparison_id == _c.id))
            .where(
                _c.project_id == project_id,
                _c.kind == ComparisonKind.gold.value,
                _c.gold_choice.is_not(None),
                _HUMAN,
            )
            .group_by(_j.rater_id)
        )
    }
    active_hours: dict[int, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(RaterHour.rater_id, func.count())
            .where(
                RaterHour.project_id == project_id,
                RaterHour.source == JudgmentSource.human.value,
                RaterHour.judgments > 0,
            )
            .group_by(RaterHour.rater_id)
        ).all()
    )
    users = {
        u.id: u
        for u in session.execute(
            select(User.id, User.username, User.role, User.is_active, User.is_paused).where(
                User.id.in_(rater_ids)
            )
        )
    }
    first_last = _first_and_last(session, project_id, rater_ids)
    raters = []
    for row in counts:
        user = users[row[0]]
        n_gold, n_correct = gold.get(row[0], (0, 0))
        first_at, last_at = first_last.get(row[0], (None, None))
        raters.append(
            RaterQuality(
                rater_id=row[0],
                username=user.username,
                role=str(user.role),
                is_active=bool(user.is_active),
                is_paused=bool(user.is_paused),
                judgments=int(row[1]),
                ties=int(row[2]),
                both_bad=int(row[3]),
                non_tie=int(row[4]),
                left=int(row[5]),
                gold_judgments=n_gold,
                gold_correct=n_correct,
                active_hours=int(active_hours.get(row[0], 0)),
                first_at=first_at,
                last_at=last_at,
                values={v: int(n) for v, n in zip(SIGNED_VALUES, row[6:], strict=True)},
            )
        )
    raters.sort(key=lambda r: (-r.judgments, r.username))
    return raters


def _first_and_last(
    session: Session, project_id: int, rater_ids: list[int]
) -> dict[int, tuple[datetime | None, datetime | None]]:
    """Per rater: their first and last human judgment here, each one probe of the (rater,
    created_at) index."""

    def edge(aggregate: Any) -> Any:
        return (
            select(aggregate(Judgment.created_at))
            .where(Judgment.rater_id == User.id, Judgment.project_id == project_id, _HUMAN)
            .correlate(User)
            .scalar_subquery()
        )

    rows = session.execute(select(User.id, edge(func.min), edge(func.max)).where(User.id.in_(rater_ids)))
    return {rid: (first, last) for rid, first, last in rows}


def _rater_agreement(session: Session, project_id: int) -> dict[int, PairCounts]:
    """Per rater: (agreeing, all) pairs of their vote with another human vote on the same pair,
    from the pair tallies (each pair of votes is kept once, under the rater of the later vote)."""
    p = RaterPairTally
    result: dict[int, PairCounts] = {}
    for side in (p.rater_id, p.other_id):
        for rid, agreeing, pairs in session.execute(
            select(side, func.sum(p.agreeing), func.sum(p.pairs))
            .where(p.project_id == project_id)
            .group_by(side)
        ):
            result[rid] = result.get(rid, PairCounts()) + PairCounts(int(agreeing or 0), int(pairs or 0))
    return {rid: counts for rid, counts in result.items() if counts.pairs}


def _flag_counts(session: Session, project_id: int) -> dict[int, tuple[int, Counter[str]]]:
    """Per rater: flagged judgments, and judgments per flag, from the tallies."""
    human = JudgmentSource.human.value
    flagged = session.execute(
        select(RaterTally.rater_id, RaterTally.flagged).where(
            RaterTally.project_id == project_id, RaterTally.source == human, RaterTally.flagged > 0
        )
    ).all()
    counts: dict[int, Counter[str]] = {rid: Counter() for rid, _ in flagged}
    for rid, flag, n in session.execute(
        select(RaterFlagTally.rater_id, RaterFlagTally.flag, RaterFlagTally.judgments).where(
            RaterFlagTally.project_id == project_id,
            RaterFlagTally.source == human,
            RaterFlagTally.judgments > 0,
        )
    ):
        counts.setdefault(rid, Counter())[flag] = int(n)
    return {rid: (int(n), counts[rid]) for rid, n in flagged}


def _mark_outliers(raters: list[RaterQuality], total: PairCounts, gold: PairCounts) -> None:
    for rater in raters:
        rater.others_agreement = total - PairCounts(rater.agreement.agreeing, rater.agreement.pairs)
        rater.others_gold = gold - PairCounts(rater.gold_correct, rater.gold_judgments)
        reasons = []
        if rater.position_biased:
            reasons.append(
                f"position bias: picks the left response in {rater.left_share:.0%} of "
                f"{rater.non_tie} non-tie votes (p = {rater.left_p_value:.2g})"
            )
        if rater.gold_outlier:
            reasons.append(
                f"gold accuracy {rater.gold_accuracy:.0%} vs {rater.others_gold.rate:.0%} for the others"
            )
        if rater.agreement_outlier:
            reasons.append(
                f"agreement {rater.agreement.rate:.0%} vs {rater.others_agreement.rate:.0%} among the others"
            )
        rater.outliers = reasons


def rater_report(session: Session, project: Project) -> list[RaterQuality]:
    """Per human rater of the project: volumes, rates, bias test, gold accuracy, agreement, outliers."""
    _analytics(session)
    raters = _rater_rows(session, project.id)
    if not raters:
        return []
    pairs = _rater_agreement(session, project.id)
    flags = _flag_counts(session, project.id)
    medians = project_median_seconds(
        session, project.id, project_judgment_counts(session, project.id, [r.rater_id for r in raters])
    )
    for rater in raters:
        rater.agreement = pairs.get(rater.rater_id, PairCounts())
        rater.flagged, counts = flags.get(rater.rater_id, (0, Counter()))
        # The project's flags in their order, then any flag since removed from the project.
        rater.flag_counts = {flag: counts[flag] for flag in project.flags if counts[flag]} | {
            flag: n for flag, n in sorted(counts.items()) if flag not in project.flags
        }
        rater.median_seconds = medians.get(rater.rater_id)
    # Each unordered pair of votes is counted once from each side.
    total = PairCounts(
        sum(p.agreeing for p in pairs.values()) // 2, sum(p.pairs for p in pairs.values()) // 2
    )
    gold = PairCounts(sum(r.gold_correct for r in raters), sum(r.gold_judgments for r in raters))
    _mark_outliers(raters, total, gold)
    return raters


def set_paused(session: Session, *, user: User, paused: bool) -> None:
    """Pause (no new pairs) or resume a rater."""
    if user.role == Role.judge:
        raise QualityError("An AI judge is not a rater; it cannot be paused.")
    user.is_paused = paused
    session.flush()
