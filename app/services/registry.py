"""The model registry: base models, the versions runs train, lineage, promotion, and the disk
their files take (`disk_usage`, `prune_plan`, `prune`).

A trained version is registered by `register_trained`, in the transaction that marks its run
succeeded, once the worker has published its files. A version trained with LoRA holds its
adapter alone (`is_adapter`): its parent's files are needed to load it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ModelKind, ModelVersion, Project, Run, RunStatus, Schedule
from app.models.types import utcnow
from app.run_kinds import KINDS
from app.services.runs.lifecycle import succeed


class RegistryError(ValueError):
    pass


def find_model(session: Session, ref: str | int) -> ModelVersion | None:
    """By id (a number) or by name."""
    if isinstance(ref, int) or str(ref).isdigit():
        return session.get(ModelVersion, int(ref))
    return session.scalars(select(ModelVersion).where(ModelVersion.name == ref)).one_or_none()


# Stores a version's files may live in (fsspec protocols the workers can read).
URI_SCHEMES = frozenset({"file", "s3", "gs", "gcs", "az", "abfs", "hf"})
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
_MODEL_FILES = ("config.json", "adapter_config.json")


def checked_model_uri(location: str) -> str:
    """Where a base model's files are, checked: an existing local directory holding a
    ``config.json`` (or an adapter's ``adapter_config.json``), returned as an absolute path; a
    URL in a known store (``s3://``, ``hf://``...); or a Hugging Face hub id (``org/name``).
    Anything else raises `RegistryError` saying why."""
    location = location.strip()
    if "://" in location:
        scheme = location.split("://", 1)[0].lower()
        if scheme not in URI_SCHEMES:
            known = ", ".join(f"{s}://" for s in sorted(URI_SCHEMES))
            raise RegistryError(f"{location!r}: unknown scheme {scheme}:// (known: {known})")
        if scheme != "file":
            return location
        location = location.removeprefix("file://").removeprefix("FILE://")
    path = Path(location).expanduser()
    if not path.exists() and _HUB_ID.match(location) and ".." not in location:
        return location  # a hub id: fetched by the worker when first used
    if not path.is_dir():
        raise RegistryError(f"{location!r} is not an existing directory (nor a hub id like org/name)")
    if not any((path / name).is_file() for name in _MODEL_FILES):
        raise RegistryError(f"{location!r} has no config.json: not a Hugging Face model directory")
    return str(path.resolve())


def register_base(
    session: Session,
    *,
    name: str,
    uri: str,
    kind: ModelKind = ModelKind.policy,
    description: str = "",
) -> ModelVersion:
    """Register a model whose files are already complete (a local directory, a store URL or a
    hub id; see `checked_model_uri`)."""
    uri = checked_model_uri(uri)
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


# --- disk use and pruning ---------------------------------------------------------------------


def version_bytes(uri: str) -> int | None:
    """Bytes of the files at `uri` (a local directory or file, or an fsspec URL); None when they
    cannot be measured (a hub id, a store that does not answer)."""
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if path.is_file():
            return path.stat().st_size
        if not path.is_dir():
            return None
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(uri)
        return int(fs.du(root, total=True))
    except Exception:  # noqa: BLE001 - unreachable or unsupported store: unknown, not an error
        return None


def disk_usage(session: Session, model_ids: Iterable[int] | None = None) -> dict[int, int | None]:
    """Bytes on disk of each version's own files, by id: an adapter counts its adapter alone
    (its parent is counted as a version of its own); a pruned version 0; None when unknown."""
    query = select(ModelVersion)
    if model_ids is not None:
        query = query.where(ModelVersion.id.in_(list(model_ids)))
    return {m.id: 0 if m.pruned_at else version_bytes(m.uri) for m in session.scalars(query)}


@dataclass(frozen=True)
class PruneItem:
    model: ModelVersion
    bytes: int | None


def _in_use(session: Session) -> set[int]:
    """Versions that queued or running runs and enabled schedules will load."""
    from app.services.runs.schedules import current_policy_id

    used: set[int] = set()
    active = session.scalars(select(Run).where(Run.status.in_([RunStatus.queued, RunStatus.running])))
    for run in active:
        for need in KINDS[run.kind].inputs:
            value = getattr(run, need.field) if need.on_run else run.config.get(need.field)
            if isinstance(value, int):
                used.add(value)
    for schedule in session.scalars(select(Schedule).where(Schedule.enabled.is_(True))):
        policy = current_policy_id(session, schedule)
        used |= {v for k, v in schedule.config.items() if k.endswith("model_id") and isinstance(v, int)}
        if isinstance(policy, int):
            used.add(policy)
    return used


def prune_plan(session: Session, *, project_id: int | None = None) -> list[PruneItem]:
    """The versions whose files `prune` would remove, oldest first, with their bytes.

    A version qualifies when a run trained it (base models stay: their files may be the user's),
    it is not promoted nor pruned already, no queued or running run and no enabled schedule will
    load it, and no version that stays is an adapter on top of it (directly or through a chain
    of adapters).
    """
    versions = {m.id: m for m in session.scalars(select(ModelVersion))}
    used = _in_use(session)
    candidates = {
        m.id
        for m in versions.values()
        if (m.run_id is not None or m.parent_id is not None)
        and not m.promoted
        and m.pruned_at is None
        and m.id not in used
        and (project_id is None or m.project_id == project_id)
    }
    kept = [m for m in versions.values() if m.pruned_at is None and m.id not in candidates]
    while kept:  # an adapter that stays needs its parent's files: keep the chain underneath
        model = kept.pop()
        if model.is_adapter and model.parent_id in candidates:
            candidates.discard(model.parent_id)
            kept.append(versions[model.parent_id])
    return [PruneItem(versions[i], version_bytes(versions[i].uri)) for i in sorted(candidates)]


def prune(session: Session, items: Iterable[PruneItem]) -> int:
    """Remove the files of the planned versions and mark them pruned (the rows stay, for
    lineage, metrics and the exports that name them). Returns the bytes freed.

    If a removal fails, the error propagates and the transaction marks none of them; a second
    prune finds the files already removed gone and marks those versions then."""
    freed = 0
    for item in items:
        _remove_files(item.model.uri)
        item.model.pruned_at = utcnow()
        freed += item.bytes or 0
        session.flush()
    return freed


def _remove_files(uri: str) -> None:
    if "://" not in uri or uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        return
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    if fs.exists(root):
        fs.rm(root, recursive=True)
