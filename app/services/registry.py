"""The model registry: base models, lineage, promotion."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ModelKind, ModelVersion, Run


class RegistryError(ValueError):
    pass


def find_model(session: Session, ref: str | int) -> ModelVersion | None:
    """By id (a number) or by name."""
    if isinstance(ref, int) or str(ref).isdigit():
        return session.get(ModelVersion, int(ref))
    return session.scalars(select(ModelVersion).where(ModelVersion.name == ref)).one_or_none()


def register_base(
    session: Session,
    *,
    name: str,
    uri: str,
    kind: ModelKind = ModelKind.policy,
    description: str = "",
) -> ModelVersion:
    """Register a model whose files are already complete (a local directory or a hub id)."""
    if find_model(session, name) is not None:
        raise RegistryError(f"a model version named {name!r} exists already")
    model = ModelVersion(name=name, kind=kind, uri=uri, description=description)
    session.add(model)
    session.flush()
    return model


def lineage(session: Session, model: ModelVersion) -> list[ModelVersion]:
    """The model and its ancestors, newest first."""
    chain = [model]
    seen = {model.id}
    while chain[-1].parent_id is not None and chain[-1].parent_id not in seen:
        parent = session.get(ModelVersion, chain[-1].parent_id)
        if parent is None:
            break
        chain.append(parent)
        seen.add(parent.id)
    return chain


def promote(session: Session, *, model: ModelVersion) -> None:
    """Mark a version as the project's current one (one promoted version per kind and project)."""
    for other in session.scalars(
        select(ModelVersion).where(
            ModelVersion.kind == model.kind,
            ModelVersion.project_id == model.project_id,
            ModelVersion.promoted.is_(True),
        )
    ):
        other.promoted = False
    model.promoted = True
    session.flush()


def producing_run(session: Session, model: ModelVersion) -> Run | None:
    return session.get(Run, model.run_id) if model.run_id else None
