"""Per-writer quality of a project's written and improved demonstrations: volumes, review
outcomes, time and length, edit distance, lazy-writer flags, and the rules that flag a writer.

**Figures** (over the writer's demonstrations of the project, written and improved; imported
ones have no author):

* *Acceptance rate*: accepted / (accepted + rejected), over the decided ones (pending ones wait
  for their reviews and do not count).
* *Mean review score*: the mean of every 1-5 score their demonstrations received.
* *Median time*: the median ``time_spent_ms`` per demonstration; *mean length*: the mean
  number of characters of their answers.
* *Mean edit distance*: over their improvements, the mean character edit distance from the
  completion they started from (app/services/writing/checks.py).
* *Lazy share*: the share of their demonstrations with a lazy-writer flag (copies a completion,
  an unchanged improvement, a duplicate of another writer's answer).

**Outliers** (in the style of the raters' rules: a writer is compared with the pooled figures of
the other writers, and no rule fires on too little data):

* acceptance: at least `WRITER_MIN_DECIDED` decided demonstrations, and an acceptance rate at
  least `ACCEPTANCE_GAP` below the other writers' pooled rate (they too need at least
  `WRITER_MIN_DECIDED`);
* review score: at least `WRITER_MIN_REVIEWS` reviews received, and a mean score at least
  `SCORE_GAP` points below the other writers' pooled mean (on at least `WRITER_MIN_REVIEWS`);
* lazy answers: at least `WRITER_MIN_DEMONSTRATIONS` demonstrations, and a lazy share at least
  `LAZY_GAP` above the other writers' pooled share (on at least `WRITER_MIN_DEMONSTRATIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import grouped_median, json_array_length
from app.models import Demonstration, DemonstrationReview, DemonstrationSource, Project, ReviewStatus, User
from app.services.quality.common import _analytics, _count_if, _rate

WRITER_MIN_DECIDED = 10
ACCEPTANCE_GAP = 0.20
WRITER_MIN_REVIEWS = 10
SCORE_GAP = 1.0
WRITER_MIN_DEMONSTRATIONS = 10
LAZY_GAP = 0.20

_WRITTEN = (DemonstrationSource.written.value, DemonstrationSource.improved.value)


@dataclass
class WriterQuality:
    writer_id: int
    username: str
    is_active: bool
    is_paused: bool
    demonstrations: int
    written: int
    improved: int
    accepted: int
    rejected: int
    pending: int
    chars: int  # of all their answers
    edit_sum: int  # over their improvements
    lazy: int  # demonstrations with a lazy-writer flag
    first_at: datetime | None
    last_at: datetime | None
    reviews: int = 0  # received
    score_sum: int = 0
    median_seconds: float | None = None
    # the other writers' pooled figures: (accepted, decided), (score sum, reviews), (lazy, all)
    others_accepted: tuple[int, int] = (0, 0)
    others_score: tuple[int, int] = (0, 0)
    others_lazy: tuple[int, int] = (0, 0)
    outliers: list[str] = field(default_factory=list)

    @property
    def decided(self) -> int:
        return self.accepted + self.rejected

    @property
    def acceptance_rate(self) -> float | None:
        return _rate(self.accepted, self.decided)

    @property
    def mean_score(self) -> float | None:
        return _rate(self.score_sum, self.reviews)

    @property
    def mean_chars(self) -> float | None:
        return _rate(self.chars, self.demonstrations)

    @property
    def mean_edit_distance(self) -> float | None:
        return _rate(self.edit_sum, self.improved)

    @property
    def lazy_share(self) -> float | None:
        return _rate(self.lazy, self.demonstrations)

    @property
    def others_acceptance_rate(self) -> float | None:
        return _rate(*self.others_accepted)

    @property
    def others_mean_score(self) -> float | None:
        return _rate(*self.others_score)

    @property
    def others_lazy_share(self) -> float | None:
        return _rate(*self.others_lazy)

    @property
    def acceptance_outlier(self) -> bool:
        mine, others = self.acceptance_rate, self.others_acceptance_rate
        return (
            self.decided >= WRITER_MIN_DECIDED
            and self.others_accepted[1] >= WRITER_MIN_DECIDED
            and mine is not None
            and others is not None
            and mine <= others - ACCEPTANCE_GAP + 1e-12
        )

    @property
    def score_outlier(self) -> bool:
        mine, others = self.mean_score, self.others_mean_score
        return (
            self.reviews >= WRITER_MIN_REVIEWS
            and self.others_score[1] >= WRITER_MIN_REVIEWS
            and mine is not None
            and others is not None
            and mine <= others - SCORE_GAP + 1e-12
        )

    @property
    def lazy_outlier(self) -> bool:
        mine, others = self.lazy_share, self.others_lazy_share
        return (
            self.demonstrations >= WRITER_MIN_DEMONSTRATIONS
            and self.others_lazy[1] >= WRITER_MIN_DEMONSTRATIONS
            and mine is not None
            and others is not None
            and mine >= others + LAZY_GAP - 1e-12
        )


def _writer_rows(session: Session, project_id: int) -> list[WriterQuality]:
    d = Demonstration.__table__.c
    written = d.source.in_(_WRITTEN)
    mine = (d.project_id == project_id, written, d.author_id.is_not(None))
    counts = session.execute(
        select(
            d.author_id,
            func.count(),
            _count_if(d.source == DemonstrationSource.written.value),
            _count_if(d.source == DemonstrationSource.improved.value),
            _count_if(d.review_status == ReviewStatus.accepted.value),
            _count_if(d.review_status == ReviewStatus.rejected.value),
            _count_if(d.review_status == ReviewStatus.pending.value),
            func.coalesce(func.sum(func.length(d.response)), 0),
            func.coalesce(func.sum(d.edit_distance), 0),
            _count_if(json_array_length(session, d.lazy_flags) > 0),
            func.min(d.created_at),
            func.max(d.created_at),
        )
        .where(*mine)
        .group_by(d.author_id)
    ).all()
    if not counts:
        return []
    r = DemonstrationReview.__table__.c
    received = {
        author: (int(n), int(total or 0))
        for author, n, total in session.execute(
            select(d.author_id, func.count(), func.sum(r.score))
            .select_from(
                DemonstrationReview.__table__.join(Demonstration.__table__, d.id == r.demonstration_id)
            )
            .where(*mine)
            .group_by(d.author_id)
        )
    }
    medians = grouped_median(
        session,
        select(d.author_id, d.time_spent_ms).where(*mine),
    )
    users = {
        u.id: u
        for u in session.execute(
            select(User.id, User.username, User.is_active, User.is_paused).where(
                User.id.in_([row[0] for row in counts])
            )
        )
    }
    writers = []
    for row in counts:
        user = users[row[0]]
        reviews, score_sum = received.get(row[0], (0, 0))
        median_ms = medians.get(row[0])
        writers.append(
            WriterQuality(
                writer_id=row[0],
                username=user.username,
                is_active=bool(user.is_active),
                is_paused=bool(user.is_paused),
                demonstrations=int(row[1]),
                written=int(row[2]),
                improved=int(row[3]),
                accepted=int(row[4]),
                rejected=int(row[5]),
                pending=int(row[6]),
                chars=int(row[7]),
                edit_sum=int(row[8]),
                lazy=int(row[9]),
                first_at=row[10],
                last_at=row[11],
                reviews=reviews,
                score_sum=score_sum,
                median_seconds=None if median_ms is None else median_ms / 1000,
            )  # fmt: skip
        )
    writers.sort(key=lambda w: (-w.demonstrations, w.username))
    return writers


def _mark_outliers(writers: list[WriterQuality]) -> None:
    accepted = sum(w.accepted for w in writers), sum(w.decided for w in writers)
    scores = sum(w.score_sum for w in writers), sum(w.reviews for w in writers)
    lazy = sum(w.lazy for w in writers), sum(w.demonstrations for w in writers)
    for w in writers:
        w.others_accepted = (accepted[0] - w.accepted, accepted[1] - w.decided)
        w.others_score = (scores[0] - w.score_sum, scores[1] - w.reviews)
        w.others_lazy = (lazy[0] - w.lazy, lazy[1] - w.demonstrations)
        reasons = []
        if w.acceptance_outlier:
            reasons.append(
                f"acceptance {w.acceptance_rate:.0%} of {w.decided} reviewed vs "
                f"{w.others_acceptance_rate:.0%} for the other writers"
            )
        if w.score_outlier:
            reasons.append(
                f"mean review score {w.mean_score:.1f} vs {w.others_mean_score:.1f} for the other writers"
            )
        if w.lazy_outlier:
            reasons.append(
                f"lazy-writer flags on {w.lazy_share:.0%} of {w.demonstrations} answers vs "
                f"{w.others_lazy_share:.0%} for the other writers"
            )
        w.outliers = reasons


def writer_report(session: Session, project: Project) -> list[WriterQuality]:
    """Per writer of the project (most demonstrations first): volumes, review outcomes, time,
    length, edit distance, lazy answers and outliers."""
    _analytics(session)
    writers = _writer_rows(session, project.id)
    _mark_outliers(writers)
    return writers
