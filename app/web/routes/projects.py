"""Admin pages: projects, imports, raters and their counts."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Role, Scale, User
from app.schemas.project import ProjectCreate, ProjectUpdate
from app.services import importing, projects, stats, users
from app.web.deps import AdminUser, SessionDep, SettingsDep, StaffUser, project_or_404, verify_csrf
from app.web.templating import render

router = APIRouter(tags=["admin"], dependencies=[Depends(verify_csrf)])


@dataclass(frozen=True)
class QualityForm:
    """The label-quality settings of the project form, as typed."""

    gold_percent: str = "0"
    max_overlap: str = ""
    split_threshold: str = "0.66"
    judge_rubric: str = ""


def _form_errors(error: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]


def _project_fields(
    name: str, instructions: str, overlap: str, scale: str, flags: str, rationale_required: bool,
    lease_minutes: str, quality: QualityForm,
) -> dict[str, object]:  # fmt: skip
    """Form strings as given; pydantic reports bad values by field name."""
    lease: object = lease_minutes
    if lease_minutes.strip().isdigit():
        lease = int(lease_minutes) * 60
    gold: object = quality.gold_percent  # not a number: pydantic names the field
    with contextlib.suppress(ValueError):
        gold = float(quality.gold_percent or 0) / 100
    return {
        "gold_rate": gold,
        "max_overlap": quality.max_overlap.strip() or None,
        "split_threshold": quality.split_threshold,
        "judge_rubric": quality.judge_rubric,
        "name": name,
        "instructions": instructions,
        "overlap": overlap,
        "scale": scale,
        "flags": [f for line in flags.splitlines() for f in line.split(",")],
        "rationale_required": rationale_required,
        "lease_seconds": lease,
    }


@router.get("/projects", include_in_schema=False)
def list_projects(request: Request, session: SessionDep, user: StaffUser) -> Response:
    return render(request, "projects.html", {"counts": stats.project_counts(session)})


@router.get("/admin", include_in_schema=False)
def dashboard(request: Request, session: SessionDep, user: AdminUser) -> Response:
    return render(
        request,
        "admin/index.html",
        {"counts": stats.project_counts(session), "raters": stats.rater_counts(session)},
    )


@router.get("/admin/projects/new", include_in_schema=False)
def new_project_form(request: Request, user: AdminUser) -> Response:
    return render(request, "admin/project_form.html", {"project": None, "scales": list(Scale)})


@router.post("/admin/projects", include_in_schema=False)
def create_project(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    slug: Annotated[str, Form(max_length=63)],
    name: Annotated[str, Form(max_length=200)],
    instructions: Annotated[str, Form(max_length=50_000)] = "",
    overlap: Annotated[str, Form(max_length=5)] = "1",
    scale: Annotated[str, Form(max_length=10)] = "five",
    flags: Annotated[str, Form(max_length=2000)] = "",
    rationale_required: Annotated[bool, Form()] = False,
    lease_minutes: Annotated[str, Form(max_length=6)] = "15",
    gold_percent: Annotated[str, Form(max_length=6)] = "0",
    max_overlap: Annotated[str, Form(max_length=5)] = "",
    split_threshold: Annotated[str, Form(max_length=6)] = "0.66",
    judge_rubric: Annotated[str, Form(max_length=50_000)] = "",
) -> Response:
    quality = QualityForm(gold_percent, max_overlap, split_threshold, judge_rubric)
    fields = _project_fields(
        name, instructions, overlap, scale, flags, rationale_required, lease_minutes, quality
    )
    try:
        project_in = ProjectCreate(slug=slug, **fields)  # type: ignore[arg-type]
        project = projects.create_project(session, project_in=project_in)
    except (ValidationError, projects.ProjectExists) as error:
        errors = _form_errors(error) if isinstance(error, ValidationError) else [str(error)]
        return render(
            request,
            "admin/project_form.html",
            {
                "project": None,
                "scales": list(Scale),
                "errors": errors,
                "form": fields | {"slug": slug},
            },
            status_code=422,
        )
    return RedirectResponse(f"/admin/projects/{project.slug}", status_code=303)


@router.get("/admin/projects/{slug}", include_in_schema=False)
def show_project(request: Request, slug: str, session: SessionDep, user: AdminUser) -> Response:
    project = project_or_404(session, slug)
    return render(
        request,
        "admin/project.html",
        {
            "project": project,
            "counts": stats.project_counts(session, [project])[0],
            "raters": stats.rater_counts(session, project_id=project.id),
            "scales": list(Scale),
            "saved": request.query_params.get("saved") == "1",
        },
    )


@router.post("/admin/projects/{slug}", include_in_schema=False)
def update_project(
    request: Request,
    slug: str,
    session: SessionDep,
    user: AdminUser,
    name: Annotated[str, Form(max_length=200)],
    instructions: Annotated[str, Form(max_length=50_000)] = "",
    overlap: Annotated[str, Form(max_length=5)] = "1",
    scale: Annotated[str, Form(max_length=10)] = "five",
    flags: Annotated[str, Form(max_length=2000)] = "",
    rationale_required: Annotated[bool, Form()] = False,
    lease_minutes: Annotated[str, Form(max_length=6)] = "15",
    is_active: Annotated[bool, Form()] = False,
    gold_percent: Annotated[str, Form(max_length=6)] = "0",
    max_overlap: Annotated[str, Form(max_length=5)] = "",
    split_threshold: Annotated[str, Form(max_length=6)] = "0.66",
    judge_rubric: Annotated[str, Form(max_length=50_000)] = "",
) -> Response:
    quality = QualityForm(gold_percent, max_overlap, split_threshold, judge_rubric)
    project = project_or_404(session, slug)
    fields = _project_fields(
        name, instructions, overlap, scale, flags, rationale_required, lease_minutes, quality
    )
    try:
        project_in = ProjectUpdate(is_active=is_active, **fields)  # type: ignore[arg-type]
    except ValidationError as error:
        return render(
            request,
            "admin/project.html",
            {
                "project": project,
                "counts": stats.project_counts(session, [project])[0],
                "raters": stats.rater_counts(session, project_id=project.id),
                "scales": list(Scale),
                "errors": _form_errors(error),
            },
            status_code=422,
        )
    projects.update_project(session, project=project, project_in=project_in)
    return RedirectResponse(f"/admin/projects/{slug}?saved=1", status_code=303)


@router.get("/admin/projects/{slug}/import", include_in_schema=False)
def import_form(request: Request, slug: str, session: SessionDep, user: AdminUser) -> Response:
    project = project_or_404(session, slug)
    return render(request, "admin/import.html", {"project": project})


@router.post("/admin/projects/{slug}/import", include_in_schema=False)
async def import_upload(
    request: Request,
    slug: str,
    session: SessionDep,
    settings: SettingsDep,
    user: AdminUser,
    kind: Annotated[str, Form(pattern="^(prompts|pairs|demos|preferences)$")],
    file: UploadFile,
) -> Response:
    project = project_or_404(session, slug)
    data = await file.read(settings.max_upload_bytes + 1)
    filename = file.filename or "upload"
    context: dict[str, object] = {"project": project, "kind": kind}
    if len(data) > settings.max_upload_bytes:
        context["failure_message"] = (
            f"{filename} is larger than the {settings.max_upload_bytes / (1024 * 1024):g} MB limit."
        )
        return render(request, "admin/import.html", context, status_code=413)
    try:
        if kind == "preferences":
            report = importing.import_preferences(session, project=project, filename=filename, data=data)
        else:
            report = importing.import_file(
                session, project=project, kind=importing.ImportKind(kind), filename=filename, data=data
            )
    except importing.ImportFailed as failure:
        session.rollback()
        context["failure"] = failure
        return render(request, "admin/import.html", context, status_code=422)
    context["report"] = report
    return render(request, "admin/import.html", context)


@router.get("/admin/users", include_in_schema=False)
def list_users(request: Request, session: SessionDep, user: AdminUser) -> Response:
    rows = session.scalars(select(User).order_by(User.role, User.username)).all()
    return render(request, "admin/users.html", {"users": rows, "roles": list(Role)})


@router.post("/admin/users", include_in_schema=False)
def create_user(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    username: Annotated[str, Form(max_length=64)],
    role: Annotated[Role, Form()] = Role.rater,
) -> Response:
    try:
        created, password = users.create_user(session, username=username, role=role)
    except users.UserError as error:
        rows = session.scalars(select(User).order_by(User.role, User.username)).all()
        return render(
            request,
            "admin/users.html",
            {"users": rows, "roles": list(Role), "error": str(error), "username": username},
            status_code=422,
        )
    return render(request, "admin/one_time_password.html", {"account": created, "password": password})


def _user_or_404(session: Session, user_id: int) -> User:
    account = session.get(User, user_id)
    if account is None:
        raise HTTPException(404, "No such user.")
    return account


@router.post("/admin/users/{user_id}/reset-password", include_in_schema=False)
def reset_password(request: Request, user_id: int, session: SessionDep, user: AdminUser) -> Response:
    account = _user_or_404(session, user_id)
    password = users.reset_password(session, user=account)
    return render(request, "admin/one_time_password.html", {"account": account, "password": password})


@router.post("/admin/users/{user_id}/active", include_in_schema=False)
def set_user_active(
    user_id: int, session: SessionDep, user: AdminUser, active: Annotated[bool, Form()] = False
) -> Response:
    account = _user_or_404(session, user_id)
    if account.id == user.id and not active:
        raise HTTPException(422, "You cannot deactivate your own account.")
    users.set_active(session, user=account, active=active)
    return RedirectResponse("/admin/users", status_code=303)
