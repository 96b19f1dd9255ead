"""A run's own rows that every part of the service writes or reads: its log lines and its frozen
snapshot, and the checks that a model version named as an input exists and is of the right kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.models import ModelKind, ModelVersion, RunItem, RunLog, SnapshotItemKind


class RunError(ValueError):
    """A run cannot be created or changed as asked; the message says why."""


def add_log(session: Session, run_id: int, message: str, level: str = "info") -> None:
    session.add(RunLog(run_id=run_id, level=level, message=message[:20000]))


def store_snapshot(session: Session, run_id: int, kind: SnapshotItemKind, ids: Iterable[int]) -> None:
    batch: list[dict[str, Any]] = []
    for item_id in ids:
        batch.append({"run_id": run_id, "item_kind": kind.value, "item_id": item_id})
        if len(batch) == 5000:
            session.execute(insert(RunItem), batch)
            batch = []
    if batch:
        session.execute(insert(RunItem), batch)


def snapshot_ids(session: Session, run_id: int, kind: SnapshotItemKind | None = None) -> list[int]:
    """The run's frozen ids of `kind`; by default its main items (all but the ranking judgments
    a preference run holds beside its judgments)."""
    query = select(RunItem.item_id).where(RunItem.run_id == run_id)
    if kind is None:
        query = query.where(RunItem.item_kind != SnapshotItemKind.ranking_judgment)
    else:
        query = query.where(RunItem.item_kind == kind)
    return list(session.scalars(query.order_by(RunItem.item_id)))


def model_of_kind(session: Session, model_id: int | None, kind: ModelKind, role: str) -> ModelVersion:
    """The version `model_id`, which must be a `kind` model; `role` names it in the error."""
    if model_id is None:
        raise RunError(f"choose a {role}")
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise RunError(f"{role}: no model version {model_id}")
    if model.kind != kind:
        raise RunError(f"{role}: model version {model.name!r} is a {model.kind.value} model")
    return model


def any_model(session: Session, model_id: int | None, role: str) -> ModelVersion:
    """The version `model_id`, of either kind; `role` names it in the error."""
    if model_id is None:
        raise RunError(f"choose {role}")
    model = session.get(ModelVersion, model_id)
    if model is None:
        raise RunError(f"{role}: no model version {model_id}")
    return model
