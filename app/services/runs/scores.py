"""What a score run stores: each scored pair's predicted preference, uncertainty and priority
(worker/training/score.py computes them), written over the pair's previous scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import Comparison, Run
from app.models.types import utcnow

# Rows per UPDATE batch.
_BATCH = 1000


def store_scores(
    session: Session, *, run: Run, context: Mapping[str, Any], outcome: Mapping[str, Any]
) -> dict[str, Any]:
    """Write `outcome["scores"]` onto their comparisons; returns the run's summary."""
    scores = outcome["scores"]
    now = utcnow()
    rows = [
        {"id": s["comparison_id"], "predicted_preference": s["predicted_preference"],
         "uncertainty": s["uncertainty"], "priority": s["priority"], "scored_at": now}
        for s in scores
    ]  # fmt: skip
    for start in range(0, len(rows), _BATCH):
        session.execute(update(Comparison), rows[start : start + _BATCH])
    uncertainties = sorted(s["uncertainty"] for s in scores)
    return {
        "pairs_scored": len(scores),
        "ensemble": [m["name"] for m in context.get("members", [])],
        "measure": run.config["measure"],
        "median_uncertainty": uncertainties[len(uncertainties) // 2] if uncertainties else None,
    }
