"""Counts for the dashboards: per project and per rater, each in a single query."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, literal, select, union_all
from sqlalchemy.orm import Session

from app.db import grouped_median
from app.models import Comparison, Demonstration, Judgment, JudgmentSource, Project, Prompt, RaterTally, User


@dataclass(frozen=True)
class ProjectCounts:
    project: Project
    prompts: int
    pairs: int
    pairs_complete: int
    judgments: int
    demonstrations: int

    @property
    def percent_complete(self) -> float:
        return 100.0 * self.pairs_complete / self.pairs if self.pairs else 0.0


@dataclass(frozen=True)
class RaterCounts:
    rater_id: int
    username: str
    is_active: bool
    judgments: int
    ties: int
    both_bad: int
    median_seconds: float | None
    last_at: object


def project_counts(session: Session, projects: list[Project] | None = None) -> list[ProjectCounts]:
    if projects is None:
        projects = list(session.scalars(select(Project).order_by(Project.name)))
    ids = [p.id for p in projects]
    if not ids:
        return []

    def per_project(query):  # type: ignore[no-untyped-def]
        return dict(session.execute(query).all())

    prompts = per_project(
        select(Prompt.project_id, func.count()).where(Prompt.project_id.in_(ids)).group_by(Prompt.project_id)
    )
    pairs = {
        pid: (total, complete)
        for pid, total, complete in session.execute(
            select(
                Comparison.project_id,
                func.count(),
                func.sum(
                    case(
                        (Comparison.judgment_count >= Project.overlap + Comparison.extra_raters, 1),
                        else_=0,
                    )
                ),
            )
            .join(Project, Project.id == Comparison.project_id)
            .where(Comparison.project_id.in_(ids))
            .group_by(Comparison.project_id)
        )
    }
    judgments = per_project(
        select(RaterTally.project_id, func.sum(RaterTally.judgments))
        .where(RaterTally.project_id.in_(ids))
        .group_by(RaterTally.project_id)
    )
    demos = per_project(
        select(Demonstration.project_id, func.count())
        .where(Demonstration.project_id.in_(ids))
        .group_by(Demonstration.project_id)
    )
    return [
        ProjectCounts(
            project=p,
            prompts=prompts.get(p.id, 0),
            pairs=pairs.get(p.id, (0, 0))[0],
            pairs_complete=int(pairs.get(p.id, (0, 0))[1] or 0),
            judgments=judgments.get(p.id, 0),
            demonstrations=demos.get(p.id, 0),
        )
        for p in projects
    ]


def rater_counts(session: Session, *, project_id: int | None = None) -> list[RaterCounts]:
    """Per rater: judgments, ties, both-bad, median seconds per judgment, last activity; the
    counts from the judgment tallies, the last judgment from the (rater, created_at) index."""
    t = RaterTally
    judgments = func.sum(t.judgments)
    query = (
        select(User.id, User.username, User.is_active, judgments, func.sum(t.ties), func.sum(t.both_bad))
        .join(t, t.rater_id == User.id)
        .where(t.source == JudgmentSource.human.value)  # AI judges are reported apart
        .group_by(User.id, User.username, User.is_active)
        .having(judgments > 0)
        .order_by(judgments.desc(), User.username)
    )
    if project_id is not None:
        query = query.where(t.project_id == project_id)
    rows = session.execute(query).all()
    ids = [r[0] for r in rows]
    if project_id is not None:
        medians = project_median_seconds(
            session, project_id, project_judgment_counts(session, project_id, ids)
        )
    else:
        medians = median_seconds(session, ids, None)
    last = (
        select(func.max(Judgment.created_at))
        .where(Judgment.rater_id == User.id, Judgment.source == JudgmentSource.human.value)
        .correlate(User)
    )
    if project_id is not None:
        last = last.where(Judgment.project_id == project_id)
    last_at = dict(session.execute(select(User.id, last.scalar_subquery()).where(User.id.in_(ids))).all())
    return [
        RaterCounts(
            rater_id=r[0],
            username=r[1],
            is_active=r[2],
            judgments=int(r[3]),
            ties=int(r[4]),
            both_bad=int(r[5]),
            median_seconds=medians.get(r[0]),
            last_at=last_at.get(r[0]),
        )
        for r in rows
    ]


def project_judgment_counts(session: Session, project_id: int, rater_ids: list[int]) -> dict[int, int]:
    """Per rater: their judgments in the project, of any source (from the tallies)."""
    return {
        rid: int(n)
        for rid, n in session.execute(
            select(RaterTally.rater_id, func.sum(RaterTally.judgments))
            .where(RaterTally.project_id == project_id, RaterTally.rater_id.in_(rater_ids))
            .group_by(RaterTally.rater_id)
        )
    }


def median_seconds(session: Session, rater_ids: list[int], project_id: int | None) -> dict[int, float]:
    """Per rater: the median seconds spent on a judgment (of one project, or of all)."""
    if not rater_ids:
        return {}
    query = select(Judgment.rater_id, Judgment.time_spent_ms).where(Judgment.rater_id.in_(rater_ids))
    if project_id is not None:
        query = query.where(Judgment.project_id == project_id)
    return {rid: ms / 1000 for rid, ms in grouped_median(session, query).items()}


_MEDIAN_BATCH = 200  # raters per statement


def project_median_seconds(session: Session, project_id: int, counts: dict[int, int]) -> dict[int, float]:
    """Per rater: the median seconds spent on a judgment of the project, given how many
    judgments each has there (`counts`): the one or two middle values are read from the
    (project, rater, time) index, so the cost does not grow with the judgments. Equal to
    `median_seconds` of the project."""
    found: dict[int, list[int]] = {}
    raters = [(rid, n) for rid, n in counts.items() if n > 0]
    for start in range(0, len(raters), _MEDIAN_BATCH):
        middles = []
        for rid, n in raters[start : start + _MEDIAN_BATCH]:
            middle = (
                select(literal(rid).label("rater_id"), Judgment.time_spent_ms.label("ms"))
                .where(Judgment.project_id == project_id, Judgment.rater_id == rid)
                .order_by(Judgment.time_spent_ms)
                .offset((n - 1) // 2)
                .limit(2 - n % 2)
                .subquery()
            )
            middles.append(select(middle.c.rater_id, middle.c.ms))
        for rid, ms in session.execute(union_all(*middles)):
            found.setdefault(rid, []).append(int(ms))
    return {rid: sum(values) / len(values) / 1000 for rid, values in found.items()}
