"""The model registry: base models, the versions runs train, lineage, promotion.

A trained version is registered by `register_trained`, in the transaction that marks its run
succeeded, once the worker has published its files.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ModelKind, ModelVersion, Project, Run
from app.run_kinds import KINDS
from app.services.runs.lifecycle import succeed


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


def unique_model_name(session: Session, base: str) -> str:
    taken = set(session.scalars(select(ModelVersion.name).where(ModelVersion.name.like(f"{base}%"))))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def trained_name(session: Session, run: Run) -> str:
    """The free name for the version `run` trains: `<project>-<kind>-run<id>` (`-2`, ... when
    taken). The worker publishes the files under it before registering them."""
    project = session.get(Project, run.project_id)
    assert project is not None
    return unique_model_name(session, f"{project.slug}-{run.kind.value}-run{run.id}")


def register_trained(
    session: Session,
    *,
    run: Run,
    name: str,
    uri: str,
    is_adapter: bool,
    metrics: dict[str, float],
) -> ModelVersion:
    """Register the version a run trained (its files complete at `uri`) and mark the run
    succeeded, in one transaction. Its kind is what the run kind produces; its parent is the
    version the run started from; its metrics are the trainer's final ones."""
    produces = KINDS[run.kind].produces
    if produces is None:
        raise RegistryError(f"a {run.kind.value} run registers no model version")
    model = ModelVersion(
        name=name,
        kind=produces,
        project_id=run.project_id,
        parent_id=run.base_model_id,
        run_id=run.id,
        uri=uri,
        is_adapter=is_adapter,
        metrics=metrics,
        description=f"{run.kind.value} run {run.id}",
    )
    succeed(session, run=run, summary=metrics, model=model)
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
