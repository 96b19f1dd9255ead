"""Projects: the list, the admin dashboard, creating and editing a project, who rates in it
(visibility and members), its AI triage settings, imports."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.models import Project, Scale, Visibility
from app.schemas.project import ProjectCreate, ProjectUpdate
from app.services import audit, importing, membership, projects, stats, triage, writing
from app.services.selection.dashboard import overview as selection_overview
from app.task_kinds import TASK_KINDS
from app.web.deps import AdminUser, ProjectDep, SessionDep, SettingsDep, StaffUser, verify_csrf
from app.web.forms import (
    ImportForm,
    MembersForm,
    ProjectCreateForm,
    ProjectUpdateForm,
    TriageForm,
    VisibilityForm,
)
from app.web.input_guard import DB_ID_MAX, IdPath
from app.web.templating import render

router = APIRouter(tags=["admin"], dependencies=[Depends(verify_csrf)])


# The task kinds as the project form and the members form name them (app/task_kinds.py).
TASK_TITLES = [(kind.value, spec.title) for kind, spec in TASK_KINDS.items()]


def _form_errors(error: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]


@router.get("/projects", include_in_schema=False)
def list_projects(request: Request, session: SessionDep, user: StaffUser) -> Response:
    visible = membership.visible_projects(session, user)
    return render(request, "projects.html", {"counts": stats.project_counts(session, visible)})


@router.get("/admin", include_in_schema=False)
def dashboard(request: Request, session: SessionDep, user: AdminUser) -> Response:
    return render(
        request,
        "admin/index.html",
        {"counts": stats.project_counts(session), "raters": stats.rater_counts(session)},
    )


@router.get("/admin/projects/new", include_in_schema=False)
def new_project_form(request: Request, user: AdminUser) -> Response:
    return render(
        request,
        "admin/project_form.html",
        {"project": None, "scales": list(Scale), "task_titles": TASK_TITLES},
    )


@router.post("/admin/projects", include_in_schema=False)
def create_project(
    request: Request, session: SessionDep, user: AdminUser, form: Annotated[ProjectCreateForm, Form()]
) -> Response:
    slug = form.slug
    fields = form.project_fields()
    try:
        project_in = ProjectCreate(slug=slug, **fields)  # type: ignore[arg-type]
        project = projects.create_project(session, project_in=project_in)
        audit.record(
            session,
            audit.Actor.of(user, "web", request),
            "project.create",
            target=("project", slug),
            project=project,
        )
    except (ValidationError, projects.ProjectExists) as error:
        errors = _form_errors(error) if isinstance(error, ValidationError) else [str(error)]
        return render(
            request,
            "admin/project_form.html",
            {
                "project": None,
                "scales": list(Scale),
                "task_titles": TASK_TITLES,
                "errors": errors,
                "form": fields | {"slug": slug},
            },
            status_code=422,
        )
    return RedirectResponse(f"/admin/projects/{project.slug}", status_code=303)


def _project_page(session: Session, project: Project) -> dict[str, object]:
    return {
        "project": project,
        "counts": stats.project_counts(session, [project])[0],
        "raters": stats.rater_counts(session, project_id=project.id),
        "scales": list(Scale),
        "members": membership.list_members(session, project),
        "visibilities": list(Visibility),
        "selection": selection_overview(session, project),
        "task_titles": TASK_TITLES,
        "triage_judges": triage.judge_choices(session, project),
    }


@router.get("/admin/projects/{slug}", include_in_schema=False)
def show_project(request: Request, session: SessionDep, user: AdminUser, project: ProjectDep) -> Response:
    return render(
        request,
        "admin/project.html",
        _project_page(session, project) | {"saved": request.query_params.get("saved") == "1"},
    )


@router.post("/admin/projects/{slug}", include_in_schema=False)
def update_project(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    project: ProjectDep,
    form: Annotated[ProjectUpdateForm, Form()],
) -> Response:
    fields = form.project_fields()
    try:
        project_in = ProjectUpdate(is_active=form.is_active, **fields)  # type: ignore[arg-type]
    except ValidationError as error:
        return render(
            request,
            "admin/project.html",
            _project_page(session, project) | {"errors": _form_errors(error)},
            status_code=422,
        )
    projects.update_project(session, project=project, project_in=project_in)
    audit.record(
        session, audit.Actor.of(user, "web", request), "project.update", target=("project", project.slug),
        project=project, fields=sorted(project_in.model_dump(exclude_unset=True)),
    )  # fmt: skip
    return RedirectResponse(f"/admin/projects/{project.slug}?saved=1", status_code=303)


@router.post("/admin/projects/{slug}/visibility", include_in_schema=False)
def set_visibility(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    project: ProjectDep,
    form: Annotated[VisibilityForm, Form()],
) -> Response:
    """Open the project to every rater, or restrict it to its members (others' leases end)."""
    membership.set_visibility(session, project, form.visibility)
    audit.record(
        session, audit.Actor.of(user, "web", request), "project.visibility", target=("project", project.slug),
        project=project, visibility=form.visibility.value,
    )  # fmt: skip
    return RedirectResponse(f"/admin/projects/{project.slug}?saved=1#members", status_code=303)


def _triage_values(form: TriageForm) -> tuple[int | None, float, float]:
    """The form's judge id, margin and audit share; TriageSettingsError names a field that is not a number."""
    model = form.triage_model_id.strip()
    if model and (not model.isdigit() or int(model) > DB_ID_MAX):
        raise triage.TriageSettingsError("triage_model_id", "choose a model version from the list")
    try:
        margin = float(form.triage_margin)
    except ValueError:
        raise triage.TriageSettingsError("triage_margin", "must be a number") from None
    try:
        share = float(form.audit_percent) / 100
    except ValueError:
        raise triage.TriageSettingsError("triage_audit_share", "must be a percent from 0 to 100") from None
    return (int(model) if model else None), margin, share


@router.post("/admin/projects/{slug}/triage", include_in_schema=False)
def set_triage(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    project: ProjectDep,
    form: Annotated[TriageForm, Form()],
) -> Response:
    """Choose the project's triage judge (or none: off), its margin and the audit share."""
    try:
        model_id, margin, share = _triage_values(form)
        triage.update_triage_settings(session, project=project, model_id=model_id, margin=margin,
                                      audit_share=share)  # fmt: skip
    except triage.TriageSettingsError as error:
        session.rollback()
        return render(
            request,
            "admin/project.html",
            _project_page(session, project) | {"triage_error": str(error), "triage_form": form},
            status_code=422,
        )
    audit.record(
        session, audit.Actor.of(user, "web", request), "project.triage", target=("project", project.slug),
        project=project, judge_model_id=model_id, margin=margin, audit_share=share,
    )  # fmt: skip
    return RedirectResponse(f"/admin/projects/{project.slug}?saved=1#triage", status_code=303)


@router.post("/admin/projects/{slug}/members", include_in_schema=False)
def add_members(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    project: ProjectDep,
    form: Annotated[MembersForm, Form()],
) -> Response:
    try:
        usernames, groups = membership.split_names(form.usernames), membership.split_names(form.groups)
        membership.add_members(
            session, project, usernames=usernames, groups=groups, added_by=user, task_kinds=form.task_kinds
        )
        audit.record(
            session, audit.Actor.of(user, "web", request), "project.members.add",
            target=("project", project.slug), project=project, users=sorted(usernames), groups=sorted(groups),
            task_kinds=form.task_kinds,
        )  # fmt: skip
    except membership.MembershipError as error:
        session.rollback()
        context = _project_page(session, project) | {"member_error": str(error), "member_form": form}
        return render(request, "admin/project.html", context, status_code=422)
    return RedirectResponse(f"/admin/projects/{project.slug}?saved=1#members", status_code=303)


@router.post("/admin/projects/{slug}/members/{member_id}/remove", include_in_schema=False)
def remove_member(
    request: Request, session: SessionDep, user: AdminUser, project: ProjectDep, member_id: IdPath
) -> Response:
    """End one membership; the member's leases here are released, their judgments kept."""
    if not membership.remove_member(session, project, member_id):
        raise HTTPException(404, "No such member of this project.")
    audit.record(
        session, audit.Actor.of(user, "web", request), "project.members.remove",
        target=("project", project.slug), project=project, member=member_id,
    )  # fmt: skip
    return RedirectResponse(f"/admin/projects/{project.slug}?saved=1#members", status_code=303)


@router.get("/admin/projects/{slug}/import", include_in_schema=False)
def import_form(request: Request, user: AdminUser, project: ProjectDep) -> Response:
    return render(request, "admin/import.html", {"project": project})


@router.post("/admin/projects/{slug}/import", include_in_schema=False)
async def import_upload(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: AdminUser,
    project: ProjectDep,
    form: Annotated[ImportForm, Form()],
    file: UploadFile,
) -> Response:
    kind = form.kind
    data = file.file  # spooled to disk by the form parser; JSONL is read from it line by line
    filename = file.filename or "upload"
    context: dict[str, object] = {"project": project, "kind": kind}
    data.seek(0, 2)
    size = data.tell()
    data.seek(0)
    if size > settings.max_upload_bytes:
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
    audit.record(
        session, audit.Actor.of(user, "web", request), "project.import", target=("file", filename),
        project=project, kind=kind,
    )  # fmt: skip
    context["report"] = report
    if form.writing_tasks and kind in ("prompts", "pairs"):
        wanted = set(form.writing_tasks)
        context["writing_tasks"] = writing.add_project_tasks(
            session, project, write="write" in wanted, improve="improve" in wanted
        )
    return render(request, "admin/import.html", context)
