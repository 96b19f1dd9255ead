"""Model versions as the pages list them: by kind, newest first, and names by id."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ModelKind, ModelVersion


def list_versions(session: Session, kind: ModelKind | None = None) -> list[ModelVersion]:
    """Versions (of one kind, or all), the newest registered first."""
    query = select(ModelVersion).order_by(ModelVersion.id.desc())
    if kind is not None:
        query = query.where(ModelVersion.kind == kind)
    return list(session.scalars(query))


def policies_by_creation(session: Session) -> list[ModelVersion]:
    """Policy versions, the newest created first (ties: the newest registered)."""
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.kind == ModelKind.policy)
            .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
        )
    )


def names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """The names of the versions with these ids."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = session.execute(select(ModelVersion.id, ModelVersion.name).where(ModelVersion.id.in_(wanted)))
    return {version_id: name for version_id, name in rows}
