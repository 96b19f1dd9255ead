"""What triage did for a project: how many pairs went where, the human votes it saved, and the
judge's accuracy on the audited pairs (against the human majority) with a Wilson interval.

A pair triaged to the judge would have needed `overlap` human votes: that is what it saved. The
audited pairs are a random share of the confident ones, so the accuracy on them estimates the
accuracy of the labels that skipped humans. An audited pair counts once its human votes have a
majority for A or B (a tied or split vote says nothing about the judge).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Comparison, Judgment, JudgmentSource, ModelVersion, Project, TriageState
from app.services.triage.rules import wilson_interval


@dataclass(frozen=True)
class TriageReport:
    judge_name: str | None  # the project's triage judge now (None: triage is off)
    margin: float
    audit_share: float
    to_judge: int
    to_audit: int
    to_humans: int
    human_votes_saved: int
    audited: int  # audited pairs with a human majority
    audit_agree: int  # of those, where the judge's label matches it
    audit_pending: int

    @property
    def triaged(self) -> int:
        return self.to_judge + self.to_audit + self.to_humans

    @property
    def accuracy(self) -> float | None:
        return self.audit_agree / self.audited if self.audited else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.audit_agree, self.audited)


def _audit_outcomes(session: Session, project_id: int) -> tuple[int, int, int]:
    """(audited with a human majority, judge agrees with it, audited still without one)."""
    audit = (
        select(Comparison.id, Comparison.triage_judge_id)
        .where(Comparison.project_id == project_id, Comparison.triage == TriageState.audit)
        .subquery()
    )
    votes: dict[int, Counter[str]] = {}
    for cid, choice in session.execute(
        select(Judgment.comparison_id, Judgment.choice)
        .join(audit, audit.c.id == Judgment.comparison_id)
        .where(Judgment.source == JudgmentSource.human)
    ):
        votes.setdefault(cid, Counter())[str(choice)] += 1
    judge = dict(
        session.execute(
            select(Judgment.comparison_id, Judgment.choice)
            .join(audit, audit.c.id == Judgment.comparison_id)
            .where(Judgment.rater_id == audit.c.triage_judge_id)
        ).all()
    )
    total = session.scalar(select(func.count()).select_from(audit)) or 0
    audited = agree = 0
    for cid, count in votes.items():
        if count["A"] == count["B"] or cid not in judge:
            continue
        audited += 1
        agree += str(judge[cid]) == ("A" if count["A"] > count["B"] else "B")
    return audited, agree, total - audited


def triage_report(session: Session, project: Project) -> TriageReport:
    counts = dict(
        session.execute(
            select(Comparison.triage, func.count())
            .where(Comparison.project_id == project.id, Comparison.triage != TriageState.untriaged)
            .group_by(Comparison.triage)
        ).all()
    )
    judge = session.get(ModelVersion, project.triage_model_id) if project.triage_model_id else None
    audited, agree, pending = _audit_outcomes(session, project.id)
    to_judge = counts.get(TriageState.judge, 0)
    return TriageReport(
        judge_name=judge.name if judge is not None else None,
        margin=project.triage_margin,
        audit_share=project.triage_audit_share,
        to_judge=to_judge,
        to_audit=counts.get(TriageState.audit, 0),
        to_humans=counts.get(TriageState.human, 0),
        human_votes_saved=to_judge * project.overlap,
        audited=audited,
        audit_agree=agree,
        audit_pending=pending,
    )
