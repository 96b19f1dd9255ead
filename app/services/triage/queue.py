"""Which pairs triage touches, as queries: the pairs it may take, the condition that keeps a pair
in the human queue, the pairs a score run orders, and the labels of the pairs it gave to its judge.

The audited pairs are served first under the uncertainty order: triage gives them a priority above
any uncertainty (`AUDIT_PRIORITY`) and score runs leave them alone (`SCORED`). They are a random
share of the confident pairs, so their human labels estimate the judge's accuracy without bias
only when the reward model's order does not choose which of them raters see; served first, they
are all labelled early, and the estimate is there before many labels are spent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, exists, select

from app.models import (
    Assignment,
    AssignmentStatus,
    Comparison,
    ComparisonKind,
    Judgment,
    Project,
    TriageState,
)

# A pair raters may be served: not one that triage gave to its judge.
IN_HUMAN_QUEUE: ColumnElement[bool] = Comparison.triage != TriageState.judge
# A pair a score run orders: in the human queue and not audited (audited pairs keep their priority).
SCORED: ColumnElement[bool] = Comparison.triage.not_in([TriageState.judge, TriageState.audit])
# The priority of an audited pair: above every uncertainty (a margin is in [0, 1], a spread in [0, 0.5]).
AUDIT_PRIORITY = 2.0


def triage_candidates_query(project: Project) -> Select[Any]:
    """The project's pairs triage may take: regular, untriaged, no human vote, held by no one
    (an active assignment, even with its lease run out: its rater may renew it)."""
    held = select(Assignment.id).where(
        Assignment.comparison_id == Comparison.id, Assignment.status == AssignmentStatus.active
    )
    return select(Comparison.id).where(
        Comparison.project_id == project.id,
        Comparison.kind == ComparisonKind.regular,
        Comparison.triage == TriageState.untriaged,
        Comparison.judgment_count == 0,
        ~exists(held),
    )


def triaged_label_ids(project_id: int) -> Select[Any]:
    """The judgments that stand as labels of the pairs triage gave to its judge."""
    return (
        select(Judgment.id)
        .join(Comparison, Comparison.id == Judgment.comparison_id)
        .where(
            Comparison.project_id == project_id,
            Comparison.triage == TriageState.judge,
            Judgment.rater_id == Comparison.triage_judge_id,
        )
    )
