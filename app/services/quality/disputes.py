"""Disputed comparisons of a project (split or contested human votes) and their resolution.

A regular comparison is *split* when it has at least two human votes and the largest group of
identical choices holds less than the project's ``split_threshold`` of them (the rule of
adaptive overlap, `app.services.rating.votes_split`). An admin may resolve any regular
comparison; the resolution then labels it like a gold answer (`app.services.preferences`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

import app.services.quality.agreement as agreement
from app.models import (
    Choice,
    Comparison,
    ComparisonKind,
    ComparisonTally,
    Completion,
    Judgment,
    JudgmentSource,
    Project,
    Prompt,
    User,
)
from app.models.types import utcnow
from app.services.quality.common import VALUE_LABELS, QualityError, _analytics, _c

DisputeStatus = Literal["unresolved", "resolved", "all"]
DISPUTE_STATUSES: tuple[str, ...] = ("unresolved", "resolved", "all")
# Which pairs count as disputed: split under the project's threshold, or any disagreement at all
# (not every human vote the same; with three votes, 2 against 1 is not split at 0.66 but is here).
DisputeScope = Literal["split", "any"]
DISPUTE_SCOPES: tuple[str, ...] = ("split", "any")
DISPUTES_PER_PAGE = 20


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
    or not unanimous (scope "any"), from the comparison tallies."""
    share = project.split_threshold if scope == "split" else 1.0
    threshold = literal(share - 1e-9)
    t = ComparisonTally
    n = t.votes
    return (
        select(t.comparison_id.label("comparison_id"))
        .where(
            t.project_id == project.id,
            t.source == JudgmentSource.human.value,
            n >= 2,
            t.a < threshold * n,
            t.b < threshold * n,
            t.tie < threshold * n,
        )
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
