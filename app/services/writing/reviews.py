"""Reviews of written and improved demonstrations: which one a reviewer gets, what they see, and
the verdicts (accept or reject, a 1-5 score, the project's flags, a note).

* A demonstration needs `project.review_overlap` reviews, never by its author, at most one per
  reviewer. Reviews hold no lease: a reviewer is shown the oldest demonstration that still needs
  reviews and that they have not reviewed, and the count is checked again under the
  demonstration's row lock when the review arrives (a review beyond the overlap is refused).
* The rule: once `review_overlap` reviews are in, the demonstration is ``accepted`` when more
  than half of them accept it, else ``rejected``; before that it stays ``pending``. Only accepted
  demonstrations train by default.
* Reviewers see the lazy-writer flags, an improvement's original and diff, never the author.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from app.models import (
    Completion,
    Demonstration,
    DemonstrationReview,
    DemonstrationSource,
    Project,
    Prompt,
    ReviewStatus,
)
from app.models.types import utcnow
from app.services.rating.assignment import REMAINING_CAP, Progress
from app.services.rating.common import InvalidJudgment, NotAssigned, PairFilled, require_rater
from app.services.rating.judgments import MAX_RATIONALE_CHARS

WRITTEN = (DemonstrationSource.written, DemonstrationSource.improved)


@dataclass(frozen=True)
class ReviewView:
    demonstration_id: int
    source: DemonstrationSource
    messages: list[dict[str, str]]
    response: str
    original: str  # the completion an improved demonstration started from; "" for written ones
    diff: str
    lazy_flags: list[str]


def _open(project: Project, reviewer_id: int):  # type: ignore[no-untyped-def]
    mine = aliased(DemonstrationReview)
    return select(Demonstration.id).where(
        Demonstration.project_id == project.id,
        Demonstration.source.in_(WRITTEN),
        Demonstration.review_count < project.review_overlap,
        Demonstration.author_id != reviewer_id,
        ~exists().where(mine.demonstration_id == Demonstration.id, mine.reviewer_id == reviewer_id),
    )


def claim(
    session: Session, *, project: Project, rater_id: int, now: datetime | None = None
) -> Demonstration | None:
    require_rater(session, project, rater_id)
    demonstration_id = session.execute(
        _open(project, rater_id).order_by(Demonstration.id).limit(1)
    ).scalar_one_or_none()
    return session.get(Demonstration, demonstration_id) if demonstration_id is not None else None


def current(session: Session, *, project: Project, rater_id: int, now: datetime) -> None:
    """Reviews hold no lease."""
    return None


def view(session: Session, demonstration: Demonstration) -> ReviewView:
    messages = session.execute(
        select(Prompt.messages).where(Prompt.id == demonstration.prompt_id)
    ).scalar_one()
    original = ""
    if demonstration.edited_from_completion_id is not None:
        original = (
            session.execute(
                select(Completion.text).where(Completion.id == demonstration.edited_from_completion_id)
            ).scalar_one_or_none()
            or ""
        )
    return ReviewView(
        demonstration_id=demonstration.id, source=DemonstrationSource(demonstration.source),
        messages=messages,
        response=demonstration.response, original=original, diff=demonstration.diff,
        lazy_flags=list(demonstration.lazy_flags or []),
    )  # fmt: skip


def progress(session: Session, *, project: Project, rater_id: int, now: datetime | None = None) -> Progress:
    now = now or utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    done_today, done_total = session.execute(
        select(func.count().filter(DemonstrationReview.created_at >= midnight), func.count()).where(
            DemonstrationReview.reviewer_id == rater_id, DemonstrationReview.project_id == project.id
        )
    ).one()
    remaining = session.execute(
        select(func.count()).select_from(_open(project, rater_id).limit(REMAINING_CAP + 1).subquery())
    ).scalar_one()
    return Progress(done_today=done_today, done_total=done_total, remaining=remaining)


def has_work(session: Session, *, project: Project, rater_id: int, now: datetime) -> bool:
    return session.execute(select(_open(project, rater_id).exists())).scalar_one()


def decide(accepted: int, reviews: int, overlap: int) -> ReviewStatus:
    """The review rule: a majority of `overlap` reviews accepts; a tie or fewer rejects."""
    if reviews < overlap:
        return ReviewStatus.pending
    return ReviewStatus.accepted if accepted * 2 > reviews else ReviewStatus.rejected


def submit_review(
    session: Session,
    *,
    project: Project,
    rater_id: int,
    demonstration_id: int,
    accepted: bool,
    score: int,
    flags: tuple[str, ...] = (),
    note: str = "",
) -> tuple[DemonstrationReview, bool]:
    """Stores one review (once per demonstration and reviewer) and applies the rule."""
    require_rater(session, project, rater_id)
    demonstration = session.execute(
        select(Demonstration)
        .where(Demonstration.id == demonstration_id, Demonstration.project_id == project.id)
        .with_for_update()
    ).scalar_one_or_none()
    if demonstration is None or demonstration.source not in WRITTEN:
        raise NotAssigned("This demonstration is not waiting for review here. Reload the page.")
    if demonstration.author_id == rater_id:
        raise NotAssigned("Nobody reviews their own demonstration.")
    stored = session.scalars(
        select(DemonstrationReview).where(
            DemonstrationReview.demonstration_id == demonstration.id,
            DemonstrationReview.reviewer_id == rater_id,
        )
    ).first()
    if stored is not None:
        return stored, False
    if score not in range(1, 6):
        raise InvalidJudgment("score", f"{score!r} is not a score from 1 to 5")
    unknown = [flag for flag in flags if flag not in project.flags]
    if unknown:
        raise InvalidJudgment("flags", f"unknown flag {unknown[0]!r}")
    note = note.strip()
    if len(note) > MAX_RATIONALE_CHARS:
        raise InvalidJudgment("note", f"is over {MAX_RATIONALE_CHARS:,} characters")
    if demonstration.review_count >= project.review_overlap:
        raise PairFilled("This demonstration has all the reviews it needs. Here is the next one.")
    review = DemonstrationReview(
        demonstration_id=demonstration.id, reviewer_id=rater_id, project_id=project.id,
        accepted=accepted, score=score, flags=list(dict.fromkeys(flags)), note=note,
    )  # fmt: skip
    session.add(review)
    demonstration.review_count += 1
    session.flush()
    accepts = session.execute(
        select(func.count()).where(
            DemonstrationReview.demonstration_id == demonstration.id, DemonstrationReview.accepted.is_(True)
        )
    ).scalar_one()
    demonstration.review_status = decide(accepts, demonstration.review_count, project.review_overlap)
    session.flush()
    return review, True
