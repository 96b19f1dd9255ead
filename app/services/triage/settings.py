"""A project's triage settings: its judge (a model version: a reward model, or a policy asked as
an LM judge in both orders), the margin above which the judge's verdict stands, and the share of
confident pairs still sent to humans as an audit. Without a judge, triage is off."""

from __future__ import annotations

import math

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.models import ModelStatus, ModelVersion, Project

MAX_MARGIN = 1000.0


class TriageSettingsError(ValueError):
    """A setting that cannot be used, named by its field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def judge_choices(session: Session, project: Project) -> list[ModelVersion]:
    """The versions that may triage the project: its own and shared ones (a reward model, or a
    policy asked as an LM judge), ready and not pruned, newest first."""
    return list(
        session.scalars(
            select(ModelVersion)
            .where(
                or_(ModelVersion.project_id == project.id, ModelVersion.project_id.is_(None)),
                ModelVersion.status == ModelStatus.ready,
                ModelVersion.pruned_at.is_(None),
            )
            .order_by(ModelVersion.id.desc())
        )
    )


def update_triage_settings(
    session: Session, *, project: Project, model_id: int | None, margin: float, audit_share: float
) -> Project:
    if not math.isfinite(margin) or not 0 <= margin <= MAX_MARGIN:
        raise TriageSettingsError("triage_margin", f"must be a number from 0 to {MAX_MARGIN:g}")
    if not math.isfinite(audit_share) or not 0 <= audit_share <= 1:
        raise TriageSettingsError("triage_audit_share", "must be a share from 0 to 1")
    if model_id is not None:
        model = session.get(ModelVersion, model_id)
        if model is None or (model.project_id is not None and model.project_id != project.id):
            raise TriageSettingsError("triage_model_id", f"no model version {model_id} for this project")
        if model.status != ModelStatus.ready or model.pruned_at is not None:
            raise TriageSettingsError(
                "triage_model_id", f"the model version {model.name!r} is not ready to use"
            )
    project.triage_model_id = model_id
    project.triage_margin = margin
    project.triage_audit_share = audit_share
    session.flush()
    return project
