"""Label quality of a project: agreement, gold accuracy, rater reliability, AI judges, disputes.

Reports read narrow columns and aggregate in SQL (a handful of queries per report, none per
rater or per comparison), so they stay usable on projects with a million judgments. The
arithmetic lives in `app.services.agreement`.

**Whose votes.** Human statistics use the judgments with ``source = human``. AI judgments
(``source = ai``, owned by a ``judge`` user, who never logs in) are never counted as a human
rater; they appear only in the judge table, beside the human-human agreement.

**Definitions.**

* *Agreement* (percent): the share of agreeing pairs among all pairs of human votes on the same
  comparison, on the choice (A, B or tie). A rater's agreement is over the pairs that include
  one of their votes and another rater's vote on the same comparison.
* *Krippendorff's alpha*: ordinal over the signed strength (-2..2: +strength for A, -strength
  for B, 0 for a tie), and nominal over A/B/tie; units are comparisons with two or more votes.
* *Gold accuracy*: the share of judgments on gold pairs (``kind = gold`` with a known answer)
  whose choice equals the known answer (a gold tie must be answered with a tie).
* *Left share*: of the non-tie judgments, those that picked the completion shown on the left
  (A chosen with A on the left, or B chosen with A on the right). Position bias is tested with
  an exact two-sided binomial test against 0.5.
* *Throughput*: judgments per active hour, where active hours are the distinct clock hours (UTC)
  in which the rater submitted at least one judgment.
* *Median time*: the median ``time_spent_ms`` of the rater's judgments.

**Outliers** (a rater is highlighted for each rule that fires; none fires on too little data):

* position bias: at least `POSITION_MIN_VOTES` non-tie judgments and a binomial p-value below
  `POSITION_P_VALUE`;
* gold accuracy: at least `GOLD_MIN_JUDGMENTS` gold judgments, and an accuracy at least
  `GOLD_GAP` below the pooled gold accuracy of the other raters (who together need at least
  `GOLD_MIN_JUDGMENTS` gold judgments);
* agreement: at least `AGREEMENT_MIN_PAIRS` vote pairs shared with others, and an agreement at
  least `AGREEMENT_GAP` below the agreement among the other raters (the pairs of votes that do
  not involve this rater, at least `AGREEMENT_MIN_PAIRS` of them).

**Disputes.** A regular comparison is *split* when it has at least two human votes and the
largest group of identical choices holds less than the project's ``split_threshold`` of them
(the rule of adaptive overlap, `app.services.rating.votes_split`). An admin may resolve any
regular comparison; the resolution then labels it like a gold answer (`app.services.preferences`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, case, func, literal, or_, select, text
from sqlalchemy.orm import Session, aliased

from app.models import (
    Choice,
    Comparison,
    ComparisonKind,
    Completion,
    Judgment,
    JudgmentSource,
    Project,
    Prompt,
    Role,
    User,
)
from app.models.types import utcnow
from app.services import agreement
from app.services.agreement import Histogram, PairCounts
from app.services.stats import median_seconds

POSITION_MIN_VOTES = 30
POSITION_P_VALUE = 0.01
GOLD_MIN_JUDGMENTS = 10
GOLD_GAP = 0.20
AGREEMENT_MIN_PAIRS = 20
AGREEMENT_GAP = 0.20

SIGNED_VALUES: tuple[int, ...] = (-2, -1, 0, 1, 2)
NOMINAL: dict[Hashable, Hashable] = {v: agreement.nominal_of_signed(v) for v in SIGNED_VALUES}
VALUE_LABELS = {-2: "B much better", -1: "B better", 0: "tie", 1: "A better", 2: "A much better"}

DisputeStatus = Literal["unresolved", "resolved", "all"]
DISPUTE_STATUSES: tuple[str, ...] = ("unresolved", "resolved", "all")
# Which pairs count as disputed: split under the project's threshold, or any disagreement at all
# (not every human vote the same; with three votes, 2 against 1 is not split at 0.66 but is here).
DisputeScope = Literal["split", "any"]
DISPUTE_SCOPES: tuple[str, ...] = ("split", "any")
DISPUTES_PER_PAGE = 20

_j = Judgment.__table__.c
_c = Comparison.__table__.c
_HUMAN = _j.source == JudgmentSource.human.value
_AI = _j.source == JudgmentSource.ai.value
_signed_vote = case(
    (_j.choice == Choice.A.value, _j.strength),
    (_j.choice == Choice.B.value, -_j.strength),
    else_=0,
)


def _count_if(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --- results ----------------------------------------------------------------------------------


class _VoteShares:
    """Shares of a set of human votes (a rater's or a project's), from its counts."""

    judgments: int
    non_tie: int
    left: int
    ties: int
    both_bad: int
    flagged: int

    @property
    def tie_rate(self) -> float | None:
        return _rate(self.ties, self.judgments)

    @property
    def both_bad_rate(self) -> float | None:
        return _rate(self.both_bad, self.judgments)

    @property
    def flag_rate(self) -> float | None:
        return _rate(self.flagged, self.judgments)

    @property
    def left_share(self) -> float | None:
        return _rate(self.left, self.non_tie)

    @property
    def left_p_value(self) -> float | None:
        return agreement.binomial_test(self.left, self.non_tie) if self.non_tie else None


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
    length_bias: Any = None  # evaluation.label_length_bias(...) when available

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
        return getattr(self.length_bias, "longer_wins_rate", None)


# --- queries ----------------------------------------------------------------------------------


# Per-comparison aggregates of a large project outgrow PostgreSQL's default work_mem (4 MB) and
# spill to disk; these read-only reports raise it for their own transaction only.
ANALYTICS_WORK_MEM = "64MB"


def _analytics(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{ANALYTICS_WORK_MEM}'"))


def _hour_bucket(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("hour", _j.created_at)
    return func.substr(_j.created_at, 1, 13)  # SQLite stores 'YYYY-MM-DD HH:MM:SS...'


def _has_flags(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.jsonb_array_length(_j.flags) > 0
    return func.json_array_length(_j.flags) > 0


def _rater_rows(session: Session, project_id: int) -> list[RaterQuality]:
    """Counts per human rater of the project: one hash aggregate, then gold, hours and names."""
    left = or_(
        and_(_j.choice == Choice.A.value, _j.a_on_left.is_(True)),
        and_(_j.choice == Choice.B.value, _j.a_on_left.is_(False)),
    )
    counts = session.execute(
        select(
            _j.rater_id,
            func.count(),
            _count_if(_j.choice == Choice.tie.value),
            _count_if(_j.both_bad.is_(True)),
            _count_if(_j.choice != Choice.tie.value),
            _count_if(left),
            func.min(Judgment.created_at),
            func.max(Judgment.created_at),
            *[_count_if(_signed_vote == v) for v in SIGNED_VALUES],
        )
        .where(_j.project_id == project_id, _HUMAN)
        .group_by(_j.rater_id)
    ).all()
    if not counts:
        return []
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
    hours = select(_j.rater_id.label("rater_id"), _hour_bucket(session).label("hour")).where(
        _j.project_id == project_id, _HUMAN
    )
    hours_sub = hours.distinct().subquery()
    active_hours: dict[int, int] = {
        rid: int(n)
        for rid, n in session.execute(
            select(hours_sub.c.rater_id, func.count()).group_by(hours_sub.c.rater_id)
        )
    }
    users = {
        u.id: u
        for u in session.execute(
            select(User.id, User.username, User.role, User.is_active, User.is_paused).where(
                User.id.in_([row[0] for row in counts])
            )
        )
    }
    raters = []
    for row in counts:
        user = users[row[0]]
        n_gold, n_correct = gold.get(row[0], (0, 0))
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
                first_at=row[6],
                last_at=row[7],
                values={v: int(n) for v, n in zip(SIGNED_VALUES, row[8:], strict=True)},
            )
        )
    raters.sort(key=lambda r: (-r.judgments, r.username))
    return raters


def _human_units(project_id: int) -> Any:
    """Per comparison with human votes: the votes per choice and in all (a hash aggregate)."""
    return (
        select(
            _j.comparison_id.label("comparison_id"),
            _count_if(_j.choice == Choice.A.value).label("a"),
            _count_if(_j.choice == Choice.B.value).label("b"),
            _count_if(_j.choice == Choice.tie.value).label("tie"),
            func.count().label("votes"),
        )
        .where(_j.project_id == project_id, _HUMAN)
        .group_by(_j.comparison_id)
    )


def _rater_agreement(session: Session, project_id: int) -> dict[int, PairCounts]:
    """Per rater: (agreeing, all) pairs of their vote with another human vote on the same pair."""
    units = _human_units(project_id).having(func.count() >= 2).subquery()
    same = case(
        (_j.choice == Choice.A.value, units.c.a),
        (_j.choice == Choice.B.value, units.c.b),
        else_=units.c.tie,
    )
    query = (
        select(_j.rater_id, func.sum(same - 1), func.sum(units.c.votes - 1))
        .select_from(Judgment.__table__.join(units, units.c.comparison_id == _j.comparison_id))
        .where(_j.project_id == project_id, _HUMAN)
        .group_by(_j.rater_id)
    )
    return {rid: PairCounts(int(a or 0), int(t or 0)) for rid, a, t in session.execute(query)}


def _flag_counts(session: Session, project_id: int) -> dict[int, tuple[int, Counter[str]]]:
    """Per rater: flagged judgments, and judgments per flag (only flagged judgments are read)."""
    query = (
        select(_j.rater_id, _j.flags)
        .where(_j.project_id == project_id, _HUMAN, _has_flags(session))
        .execution_options(yield_per=5000)
    )
    flagged: Counter[int] = Counter()
    counts: dict[int, Counter[str]] = {}
    for rater_id, flags in session.execute(query):
        flagged[rater_id] += 1
        counts.setdefault(rater_id, Counter()).update(set(flags or []))
    return {rid: (flagged[rid], counts[rid]) for rid in flagged}


def _signed_histograms(session: Session, project_id: int) -> list[tuple[Histogram, int]]:
    """Distinct histograms of signed human votes over comparisons with >= 2 votes, with counts."""
    per_unit = (
        select(*[_count_if(_signed_vote == v).label(f"n{i}") for i, v in enumerate(SIGNED_VALUES)])
        .where(_j.project_id == project_id, _HUMAN)
        .group_by(_j.comparison_id)
        .having(func.count() >= 2)
        .subquery()
    )
    columns = [per_unit.c[f"n{i}"] for i in range(len(SIGNED_VALUES))]
    query = select(*columns, func.count()).group_by(*columns)
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
    judge_rows = session.execute(
        select(_j.rater_id, func.count(), func.count(func.distinct(_j.run_id)))
        .where(_j.project_id == project_id, _AI)
        .group_by(_j.rater_id)
    ).all()
    if not judge_rows:
        return []
    names = dict(
        session.execute(select(User.id, User.username).where(User.id.in_([r[0] for r in judge_rows]))).all()
    )
    # Each AI vote with the human tally of its comparison; equal combinations are counted once.
    units = _human_units(project_id).subquery()
    ai = Judgment.__table__.alias("ai")
    with_humans: dict[int, PairCounts] = {}
    shared: Counter[int] = Counter()
    human_pairs: dict[int, list[tuple[Histogram, int]]] = {}
    for rid, choice, a, b, tie, n in session.execute(
        select(ai.c.rater_id, ai.c.choice, units.c.a, units.c.b, units.c.tie, func.count())
        .select_from(ai.join(units, units.c.comparison_id == ai.c.comparison_id))
        .where(ai.c.project_id == project_id, ai.c.source == JudgmentSource.ai.value)
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


def _length_bias(session: Session, project_id: int) -> Any:
    try:
        from app.services.evaluation import label_length_bias
    except ImportError:
        return None
    return label_length_bias(session, project_id)


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
    medians = median_seconds(session, [r.rater_id for r in raters], project.id)
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


def project_quality(session: Session, project: Project, *, with_length_bias: bool = True) -> ProjectQuality:
    raters = rater_report(session, project)
    ai_judgments = session.scalar(
        select(func.count()).select_from(Judgment.__table__).where(_j.project_id == project.id, _AI)
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
        length_bias=_length_bias(session, project.id) if with_length_bias else None,
    )


# --- disputes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vote:
    judgment_id: int
    username: str
    source: str
    choice: str
    strength: int
    a_on_left: bool
    both_bad: bool
    flags: list[str]
    rationale: str
    time_spent_ms: int
    created_at: datetime

    @property
    def label(self) -> str:
        if self.choice == Choice.tie.value:
            return "tie"
        return VALUE_LABELS[agreement.signed_value(self.choice, self.strength)]


@dataclass(frozen=True)
class Dispute:
    comparison_id: int
    kind: str
    messages: list[dict[str, str]]
    text_a: str
    text_b: str
    votes: list[Vote]
    tally: dict[str, int]  # human votes per choice
    resolved_choice: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_note: str

    @property
    def human_votes(self) -> int:
        return sum(self.tally.values())


@dataclass(frozen=True)
class DisputePage:
    status: str
    page: int
    per_page: int
    total: int
    disputes: list[Dispute]
    scope: str = "split"

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def _split_units(project: Project, scope: DisputeScope = "split") -> Any:
    """Comparisons whose human votes are split under the project's threshold (scope "split"),
    or not unanimous (scope "any")."""
    share = project.split_threshold if scope == "split" else 1.0
    threshold = literal(share - 1e-9)
    n = func.count()
    a = _count_if(_j.choice == Choice.A.value)
    b = _count_if(_j.choice == Choice.B.value)
    tie = _count_if(_j.choice == Choice.tie.value)
    return (
        select(_j.comparison_id.label("comparison_id"))
        .where(_j.project_id == project.id, _HUMAN)
        .group_by(_j.comparison_id)
        .having(n >= 2, a < threshold * n, b < threshold * n, tie < threshold * n)
        .subquery()
    )


def disputes(
    session: Session,
    project: Project,
    *,
    status: DisputeStatus = "unresolved",
    page: int = 1,
    per_page: int = DISPUTES_PER_PAGE,
    scope: DisputeScope = "split",
) -> DisputePage:
    """Split or contested (and/or resolved) comparisons of a project, newest first, with every
    vote."""
    _analytics(session)
    if status not in DISPUTE_STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if scope not in DISPUTE_SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    split = _split_units(project, scope)
    regular = _c.kind == ComparisonKind.regular.value
    is_split = split.c.comparison_id.is_not(None)
    resolved = _c.resolved_choice.is_not(None)
    condition = {
        "unresolved": and_(regular, is_split, ~resolved),
        "resolved": resolved,
        "all": or_(and_(regular, is_split), resolved),
    }[status]
    base = (
        select(_c.id)
        .select_from(Comparison.__table__.outerjoin(split, split.c.comparison_id == _c.id))
        .where(_c.project_id == project.id, condition)
    )
    total = int(session.scalar(select(func.count()).select_from(base.subquery())) or 0)
    page = max(1, page)
    ids = list(session.scalars(base.order_by(_c.id.desc()).limit(per_page).offset((page - 1) * per_page)))
    return DisputePage(
        status=status,
        page=page,
        per_page=per_page,
        total=total,
        disputes=load_disputes(session, ids),
        scope=scope,
    )


def load_disputes(session: Session, comparison_ids: list[int]) -> list[Dispute]:
    """The texts and every vote (human and AI) of the given comparisons, in the order given."""
    if not comparison_ids:
        return []
    comp_a, comp_b = aliased(Completion), aliased(Completion)
    resolver = aliased(User)
    heads = {
        row[0]: row
        for row in session.execute(
            select(
                Comparison.id,
                Comparison.kind,
                Prompt.messages,
                comp_a.text,
                comp_b.text,
                Comparison.resolved_choice,
                resolver.username,
                Comparison.resolved_at,
                Comparison.resolution_note,
            )
            .join(Prompt, Prompt.id == Comparison.prompt_id)
            .join(comp_a, comp_a.id == Comparison.completion_a_id)
            .join(comp_b, comp_b.id == Comparison.completion_b_id)
            .outerjoin(resolver, resolver.id == Comparison.resolved_by_id)
            .where(Comparison.id.in_(comparison_ids))
        )
    }
    votes: dict[int, list[Vote]] = {cid: [] for cid in comparison_ids}
    for row in session.execute(
        select(
            Judgment.comparison_id,
            Judgment.id,
            User.username,
            Judgment.source,
            Judgment.choice,
            Judgment.strength,
            Judgment.a_on_left,
            Judgment.both_bad,
            Judgment.flags,
            Judgment.rationale,
            Judgment.time_spent_ms,
            Judgment.created_at,
        )
        .join(User, User.id == Judgment.rater_id)
        .where(Judgment.comparison_id.in_(comparison_ids))
        .order_by(Judgment.comparison_id, Judgment.source, Judgment.id)
    ):
        votes[row[0]].append(
            Vote(
                judgment_id=row[1],
                username=row[2],
                source=str(row[3]),
                choice=str(row[4]),
                strength=int(row[5]),
                a_on_left=bool(row[6]),
                both_bad=bool(row[7]),
                flags=list(row[8] or []),
                rationale=row[9] or "",
                time_spent_ms=int(row[10] or 0),
                created_at=row[11],
            )
        )
    result = []
    for cid in comparison_ids:
        head = heads.get(cid)
        if head is None:
            continue
        tally = Counter(v.choice for v in votes[cid] if v.source == JudgmentSource.human.value)
        result.append(
            Dispute(
                comparison_id=cid,
                kind=str(head[1]),
                messages=head[2],
                text_a=head[3],
                text_b=head[4],
                votes=votes[cid],
                tally={choice.value: tally.get(choice.value, 0) for choice in Choice},
                resolved_choice=str(head[5]) if head[5] is not None else None,
                resolved_by=head[6],
                resolved_at=head[7],
                resolution_note=head[8] or "",
            )
        )
    return result


class QualityError(Exception):
    pass


MAX_NOTE_CHARS = 5000


def resolve(
    session: Session,
    *,
    project: Project,
    comparison_id: int,
    choice: str | None,
    note: str,
    admin_id: int,
) -> Comparison | None:
    """Set (``choice`` given) or clear (``choice`` None) an admin's resolution of a comparison.

    Returns None when the comparison is not in the project; raises `QualityError` for a gold
    pair (its answer is already known), an unknown choice or an over-long note.
    """
    comparison = session.get(Comparison, comparison_id)
    if comparison is None or comparison.project_id != project.id:
        return None
    if comparison.kind != ComparisonKind.regular:
        raise QualityError("A gold pair has a known answer; it cannot be resolved.")
    if choice is None:
        comparison.resolved_choice = None
        comparison.resolved_by_id = None
        comparison.resolved_at = None
        comparison.resolution_note = ""
    else:
        if choice not in {c.value for c in Choice}:
            raise QualityError("Choose A, B or tie.")
        note = note.strip()
        if len(note) > MAX_NOTE_CHARS:
            raise QualityError(f"The note may hold at most {MAX_NOTE_CHARS} characters.")
        comparison.resolved_choice = Choice(choice)
        comparison.resolved_by_id = admin_id
        comparison.resolved_at = utcnow()
        comparison.resolution_note = note
    session.flush()
    return comparison


def set_paused(session: Session, *, user: User, paused: bool) -> None:
    """Pause (no new pairs) or resume a rater."""
    if user.role == Role.judge:
        raise QualityError("An AI judge is not a rater; it cannot be paused.")
    user.is_paused = paused
    session.flush()


__all__ = [
    "AGREEMENT_GAP",
    "AGREEMENT_MIN_PAIRS",
    "GOLD_GAP",
    "GOLD_MIN_JUDGMENTS",
    "POSITION_MIN_VOTES",
    "POSITION_P_VALUE",
    "AgreementSummary",
    "Dispute",
    "DisputePage",
    "JudgeQuality",
    "ProjectQuality",
    "RaterQuality",
    "QualityError",
    "agreement_summary",
    "disputes",
    "load_disputes",
    "project_quality",
    "rater_report",
    "resolve",
    "set_paused",
]
