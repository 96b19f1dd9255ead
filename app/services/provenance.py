"""Where each demonstration comes from, for the rows an SFT run trains on and the export: its
source (imported, written, improved), its author (as a pseudonym: an HMAC of the user id under the
server's secret key, the same one the comparison exports use), its review (status, number of
reviews, how many accepted, the mean 1-5 score) and, for an improved one, the completion and model
version it was edited from and the edit distance. Which demonstrations an SFT run or an export
reads: `DEMONSTRATION_SOURCES` by source, `review_statuses` by review (accepted ones, and pending
or rejected ones only when asked)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, Select, String, cast, func, select, type_coerce
from sqlalchemy.orm import Session

from app.models import Demonstration, DemonstrationReview, DemonstrationSource, Prompt, ReviewStatus

# The demonstration sources each `demonstration_source` (of an SFT run or an export) reads.
DEMONSTRATION_SOURCES: dict[str, tuple[DemonstrationSource, ...]] = {
    "all": tuple(DemonstrationSource),
    "imported": (DemonstrationSource.imported,),
    "written": (DemonstrationSource.written,),
    "improved": (DemonstrationSource.improved,),
    "raters": (DemonstrationSource.written, DemonstrationSource.improved),
}


def review_statuses(*, include_pending: bool = False, include_rejected: bool = False) -> list[ReviewStatus]:
    """Accepted, and pending or rejected ones when asked (imported rows are accepted)."""
    statuses = [ReviewStatus.accepted]
    if include_pending:
        statuses.append(ReviewStatus.pending)
    if include_rejected:
        statuses.append(ReviewStatus.rejected)
    return statuses


# The provenance columns, in the order `provenance_select` returns them after its first four
# (id, messages, response, prompt_id).
PROVENANCE = (
    "source",
    "author_id",
    "review_status",
    "reviews",
    "reviews_accepted",
    "review_score",
    "edited_from_completion_id",
    "edited_from_model_version_id",
    "edit_distance",
    "time_spent_ms",
    "lazy_flags",
)


def _reviews() -> Any:
    r = DemonstrationReview.__table__.c
    return (
        select(
            r.demonstration_id.label("demonstration_id"),
            func.count().label("reviews"),
            func.sum(cast(r.accepted, Integer)).label("accepted"),
            func.avg(r.score).label("score"),
        )
        .group_by(r.demonstration_id)
        .subquery("review_totals")
    )


def provenance_select(*extra: Any) -> Select[Any]:
    """id, messages, response, prompt_id, *PROVENANCE, *extra of demonstrations joined with their
    prompt and their reviews' totals (filter and order it further)."""
    d, p = Demonstration.__table__.c, Prompt.__table__.c
    reviews = _reviews()
    return (
        select(
            d.id,
            Prompt.messages,
            d.response,
            d.prompt_id,
            type_coerce(d.source, String),
            d.author_id,
            type_coerce(d.review_status, String),
            func.coalesce(reviews.c.reviews, 0),
            func.coalesce(reviews.c.accepted, 0),
            reviews.c.score,
            d.edited_from_completion_id,
            d.edited_from_model_version_id,
            d.edit_distance,
            d.time_spent_ms,
            Demonstration.lazy_flags,
            *extra,
        )
        .select_from(Demonstration.__table__.join(Prompt.__table__, p.id == d.prompt_id))
        .outerjoin(reviews, reviews.c.demonstration_id == d.id)
    )


def provenance(record: Any, author: Callable[[int], str]) -> dict[str, Any]:
    """The provenance columns of a `provenance_select` record; the author as a pseudonym."""
    values = dict(zip(PROVENANCE, record[4 : 4 + len(PROVENANCE)], strict=True))
    author_id = values.pop("author_id")
    values["author"] = author(author_id) if author_id is not None else ""
    score = values["review_score"]
    values["review_score"] = round(float(score), 3) if score is not None else None
    values["reviews_accepted"] = int(values["reviews_accepted"])
    values["lazy_flags"] = list(values["lazy_flags"] or [])
    return values


def demonstration_rows(
    session: Session, ids: list[int], author: Callable[[int], str]
) -> list[dict[str, Any]]:
    """The demonstrations `ids` as `{"demonstration_id", "prompt_id", "messages", "response",
    **provenance}`, in id order."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        query = provenance_select().where(Demonstration.id.in_(chunk)).order_by(Demonstration.id)
        for record in session.execute(query):
            rows.append(
                {"demonstration_id": record[0], "prompt_id": record[3], "messages": record[1],
                 "response": record[2], **provenance(record, author)}
            )  # fmt: skip
    return rows


@dataclass
class WritingFigures:
    """Counts by source and review status, mean review score and mean edit distance, authors and
    lazy-writer flags of a set of demonstrations (the dataset card's and a run log's writing
    figures)."""

    sources: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    score_sum: float = 0.0
    scored: int = 0
    edit_sum: int = 0
    edited: int = 0
    authors: set[str] = field(default_factory=set)  # pseudonyms
    lazy_flags: Counter[str] = field(default_factory=Counter)

    def add(self, values: dict[str, Any]) -> None:
        self.sources[values["source"]] += 1
        self.statuses[values["review_status"]] += 1
        if values["author"]:
            self.authors.add(values["author"])
        self.lazy_flags.update(values["lazy_flags"])
        if values["review_score"] is not None:
            self.score_sum += values["review_score"]
            self.scored += 1
        if values["edit_distance"] is not None:
            self.edit_sum += values["edit_distance"]
            self.edited += 1

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.scored if self.scored else None

    @property
    def mean_edit_distance(self) -> float | None:
        return self.edit_sum / self.edited if self.edited else None

    def summary(self) -> str:
        """'12 demonstrations: 4 imported, 8 written; 8 accepted; mean score 4.2; mean edit distance 31'."""
        total = sum(self.sources.values())
        by_source = ", ".join(f"{n} {s}" for s, n in sorted(self.sources.items()))
        by_status = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        line = f"{total} demonstrations: {by_source}; {by_status}"
        if self.mean_score is not None:
            line += f"; mean review score {self.mean_score:.2f} ({self.scored} reviewed)"
        if self.mean_edit_distance is not None:
            line += f"; mean edit distance {self.mean_edit_distance:.1f} ({self.edited} improved)"
        return line
