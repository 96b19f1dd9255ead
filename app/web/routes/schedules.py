"""Retraining schedules: one per project, started by beat once enough new judgments arrived."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.models import ModelKind, ModelVersion, RunKind
from app.run_kinds import loop_methods
from app.services import audit, projects, versions
from app.services.runs import schedules
from app.web.deps import AdminUser, SessionDep, verify_csrf
from app.web.forms import ScheduleForm, int_or_none
from app.web.templating import render

# A schedule that waits for more judgments than this would never fire (and the column is INTEGER).
MAX_NEW_JUDGMENTS = 1_000_000

router = APIRouter(prefix="/admin/schedules", tags=["schedules"], dependencies=[Depends(verify_csrf)])


@router.get("", include_in_schema=False)
def list_schedules(request: Request, session: SessionDep, user: AdminUser) -> Response:
    policies = versions.list_versions(session, ModelKind.policy)
    rewards = versions.list_versions(session, ModelKind.reward)
    return render(
        request,
        "runs/schedules.html",
        {
            "rows": schedules.overview(session),
            "policies": policies,
            "judges": rewards + policies,
            "saved": request.query_params.get("saved"),
        },
    )


@router.post("", include_in_schema=False)
def save_schedule(session: SessionDep, user: AdminUser, form: Annotated[ScheduleForm, Form()]) -> Response:
    project = projects.get_project(session, form.project)
    if project is None:
        raise HTTPException(422, "project: no such project")
    try:
        minimum = int(form.min_new_judgments) if len(form.min_new_judgments) <= 12 else 0
        method = RunKind(form.method)
        if not 1 <= minimum <= MAX_NEW_JUDGMENTS or method not in loop_methods():
            raise ValueError
    except ValueError:
        raise HTTPException(
            422, f"min_new_judgments: a number from 1 to {MAX_NEW_JUDGMENTS:,}; method: ppo or dpo"
        ) from None
    base_model_id = int_or_none(form.base_model_id)
    if base_model_id is None or session.get(ModelVersion, base_model_id) is None:
        raise HTTPException(422, "base_model_id: choose the policy to start from")
    judge_model_id = int_or_none(form.judge_model_id)
    if judge_model_id is not None and session.get(ModelVersion, judge_model_id) is None:
        raise HTTPException(422, "judge_model_id: no such model version")
    schedules.save(
        session,
        project=project,
        enabled=form.enabled == "true",
        min_new_judgments=minimum,
        method=method,
        base_model_id=base_model_id,
        judge_model_id=judge_model_id,
        score=form.score == "true",
    )
    audit.record(
        session, audit.Actor.of(user, "web"), "schedule.save", target=("project", project.slug),
        project=project, method=method.value, enabled=form.enabled == "true",
    )  # fmt: skip
    return RedirectResponse("/admin/schedules?saved=1", status_code=303)
