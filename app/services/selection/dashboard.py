"""What the project page shows about label selection: the strategy, how uncertain the open queue
is (the latest score run's uncertainties in ten bins), the human labels AI triage saved (from
app/services/triage/report.py where the project has it), and the learning curve of the project's
own history: each reward version's accuracy on held-out human judgments (its latest evaluate run)
against the labels its training run used."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.models import (
    Comparison,
    ComparisonKind,
    ModelKind,
    ModelVersion,
    Project,
    Run,
    SelectionStrategy,
    TriageState,
)

BINS = 10


@dataclass(frozen=True)
class CurvePoint:
    version: str
    labels: int  # judgments in the snapshot of the run that trained it
    accuracy: float  # on held-out human judgments (its latest evaluate run)


@dataclass(frozen=True)
class SelectionOverview:
    strategy: SelectionStrategy
    random_share: float
    open_pairs: int
    scored: int  # open pairs with an uncertainty
    bins: list[int]  # open scored pairs per uncertainty bin [i/BINS, (i+1)/BINS)
    last_scored_at: datetime | None
    curve: list[CurvePoint]
    triage: Any | None  # app.services.triage.report.TriageReport, where triage exists

    @property
    def bin_labels(self) -> list[str]:
        return [f"{i / BINS:.1f}" for i in range(BINS)]

    @property
    def curve_points(self) -> list[tuple[float, float]]:
        return [(float(p.labels), p.accuracy) for p in self.curve]


def _triage_report(session: Session, project: Project) -> Any | None:
    try:
        report = importlib.import_module("app.services.triage.report")
    except ModuleNotFoundError as error:  # a checkout without AI triage; errors inside it still raise
        if error.name not in ("app.services.triage", "app.services.triage.report"):
            raise
        return None
    return report.triage_report(session, project)


def learning_curve(session: Session, project: Project) -> list[CurvePoint]:
    """The project's reward versions with a held-out accuracy, by labels used (oldest first)."""
    rows = session.execute(
        select(ModelVersion.name, ModelVersion.metrics, Run.snapshot_size)
        .join(Run, Run.output_model_id == ModelVersion.id)
        .where(ModelVersion.project_id == project.id, ModelVersion.kind == ModelKind.reward)
        .order_by(ModelVersion.id)
    ).all()
    points = []
    for name, metrics, labels in rows:
        accuracy = ((metrics or {}).get("evaluation") or {}).get("accuracy")
        if isinstance(accuracy, int | float):
            points.append(CurvePoint(name, int(labels or 0), float(accuracy)))
    return sorted(points, key=lambda p: p.labels)


def overview(session: Session, project: Project) -> SelectionOverview:
    open_pairs = (
        Comparison.project_id == project.id,
        Comparison.kind == ComparisonKind.regular,
        Comparison.judgment_count < project.overlap + Comparison.extra_raters,
        Comparison.triage != TriageState.judge,
    )
    total, scored, last = session.execute(
        select(func.count(), func.count(Comparison.uncertainty), func.max(Comparison.scored_at)).where(
            *open_pairs
        )
    ).one()
    # the bin index by comparisons (CAST rounds on PostgreSQL, truncates on SQLite)
    bin_of = case(*((Comparison.uncertainty < (i + 1) / BINS, i) for i in range(BINS - 1)), else_=BINS - 1)
    bins = [0] * BINS
    for index, count in session.execute(
        select(bin_of, func.count()).where(*open_pairs, Comparison.uncertainty.is_not(None)).group_by(bin_of)
    ):
        bins[min(max(int(index), 0), BINS - 1)] += count
    return SelectionOverview(
        strategy=project.selection_strategy,
        random_share=project.random_share,
        open_pairs=total,
        scored=scored,
        bins=bins,
        last_scored_at=last,
        curve=learning_curve(session, project),
        triage=_triage_report(session, project),
    )
