"""What a score run stores: each scored pair's predicted preference, uncertainty and priority
(worker/training/score.py computes them with `combine`), written over the pair's previous
scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import Comparison, Run
from app.models.types import utcnow

# Rows per UPDATE batch.
_BATCH = 1000


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def combine(probabilities: Sequence[float], measure: str) -> tuple[float, float]:
    """The members' probabilities that a is preferred -> (prediction, uncertainty): the mean, and
    the margin 1 - |2p - 1| or (measure `disagreement`) the members' standard deviation."""
    mean = sum(probabilities) / len(probabilities)
    if measure == "disagreement":
        spread = math.sqrt(sum((p - mean) ** 2 for p in probabilities) / len(probabilities))
        return mean, spread
    return mean, 1.0 - abs(2.0 * mean - 1.0)


def write_scores(session: Session, scores: Sequence[Mapping[str, Any]]) -> None:
    """Each score (`comparison_id`, `predicted_preference`, `uncertainty`, `priority`) onto its
    comparison, stamped now."""
    now = utcnow()
    rows = [
        {"id": s["comparison_id"], "predicted_preference": s["predicted_preference"],
         "uncertainty": s["uncertainty"], "priority": s["priority"], "scored_at": now}
        for s in scores
    ]  # fmt: skip
    for start in range(0, len(rows), _BATCH):
        session.execute(update(Comparison), rows[start : start + _BATCH])


def store_scores(
    session: Session, *, run: Run, context: Mapping[str, Any], outcome: Mapping[str, Any]
) -> dict[str, Any]:
    """Write `outcome["scores"]` onto their comparisons; returns the run's summary."""
    scores = outcome["scores"]
    write_scores(session, scores)
    uncertainties = sorted(s["uncertainty"] for s in scores)
    return {
        "pairs_scored": len(scores),
        "ensemble": [m["name"] for m in context.get("members", [])],
        "measure": run.config["measure"],
        "median_uncertainty": uncertainties[len(uncertainties) // 2] if uncertainties else None,
    }
