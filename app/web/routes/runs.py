"""The training dashboard: launch, watch, cancel and retry runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.models import ModelKind, ModelVersion, Project, Run, RunKind
from app.queue import revoke, send_run
from app.run_kinds import DEFAULT_KIND, KINDS
from app.services import audit, projects, versions, workers
from app.services.runs import lifecycle, sizing
from app.services.runs.records import RunError
from app.web.deps import AdminUser, SessionDep, verify_csrf
from app.web.forms import RunForm, int_or_none
from app.web.input_guard import IdPath, IdQuery
from app.web.sessions import CSRF_FIELD
from app.web.templating import is_htmx, render

router = APIRouter(prefix="/admin", tags=["runs"], dependencies=[Depends(verify_csrf)])

KIND_TITLES = {kind: spec.title for kind, spec in KINDS.items()}


def config_fields(kind: RunKind, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The config schema as form fields: name, input type, value, choices, help."""
    schema = KINDS[kind].config
    fields = []
    for name, info in schema.model_fields.items():
        annotation = str(info.annotation)
        value = (values or {}).get(name, info.default)
        field: dict[str, Any] = {"name": name, "value": value, "help": info.description or ""}
        if "Literal" in annotation:
            field["type"] = "select"
            field["choices"] = list(info.annotation.__args__)  # type: ignore[union-attr]
        elif info.annotation is bool:
            field["type"] = "checkbox"
        elif info.annotation in (int, float) or "int" in annotation or "float" in annotation:
            field["type"] = "number"
        else:
            field["type"] = "text"
        fields.append(field)
    return fields


def _form_config(kind: RunKind, form: RunForm) -> dict[str, Any]:
    """Form strings to config values; pydantic converts and validates them. A field the kind's
    config does not have is passed on as it came, so that the config refuses it by name (as
    `rlhf train` does) instead of the form dropping it unseen."""
    values = form.config_values()
    fields = KINDS[kind].config.model_fields
    config: dict[str, Any] = {
        name: value for name, value in values.items() if name not in fields and name != CSRF_FIELD
    }
    for name, info in fields.items():
        if info.annotation is bool:
            config[name] = values.get(name) == "true"
            continue
        raw = values.get(name)
        if raw is None or str(raw).strip() == "":
            continue
        config[name] = str(raw).strip()
    return config


def _run_or_404(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise HTTPException(404, "No such run.")
    return run


@router.get("/runs", include_in_schema=False)
def list_runs(request: Request, session: SessionDep, user: AdminUser, project: str | None = None) -> Response:
    rows = lifecycle.recent_runs(session, project_slug=project)
    return render(
        request,
        "runs/index.html",
        {"rows": rows, "kinds": KIND_TITLES, "counts": lifecycle.counts_by_status(session)},
    )


@router.get("/runs/new", include_in_schema=False)
def new_run_form(
    request: Request, session: SessionDep, user: AdminUser, kind: RunKind = DEFAULT_KIND,
    project: str | None = None,
) -> Response:  # fmt: skip
    return _launch_page(request, session, kind, {"project": project})


def _launch_page(
    request: Request,
    session: Session,
    kind: RunKind,
    form: dict[str, Any],
    errors: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    policies = versions.list_versions(session, ModelKind.policy)
    rewards = versions.list_versions(session, ModelKind.reward)
    worker = workers.fastest_live(session)
    values = sizing.launch_defaults(kind, worker) | (form.get("config") or {})
    context = {
        "kind": kind,
        "title": KIND_TITLES[kind],
        "kinds": KIND_TITLES,
        "projects": projects.list_projects(session),
        "policies": policies,
        "rewards": rewards,
        # The models held on the run's columns: a select each, of versions of the right kind.
        "run_inputs": [
            (need, policies if need.kind == ModelKind.policy else rewards) for need in KINDS[kind].run_inputs
        ],
        # Config fields that name a model (versus_model_id, judge_model_id, ...): versions of the
        # kind the run-kind table declares for the field, of either kind where it declares none.
        "config_models": {
            need.field: {ModelKind.policy: policies, ModelKind.reward: rewards}[need.kind]
            if need.kind is not None
            else policies + rewards
            for need in KINDS[kind].inputs
            if not need.on_run
        },
        "fields": config_fields(kind, values),
        "form": form,
        "errors": errors or [],
        **_estimate_context(session, kind, form.get("project"), values, worker),
    }
    return render(request, "runs/new.html", context, status_code=status_code)


def _estimate_context(
    session: Session, kind: RunKind, slug: str | None, values: dict[str, Any], worker: Any
) -> dict[str, Any]:
    """The worker the form is sized for, the run's estimated duration on the project's data, and
    the warnings (long run, too little data)."""
    context: dict[str, Any] = {
        "worker": workers.describe(worker),
        "sized_for_cpu": bool(sizing.launch_defaults(kind, worker)),
        "estimate": None,
        "estimate_error": None,
        "duration": sizing.duration,
    }
    project = projects.get_project(session, slug) if slug else None
    if project is None:
        return context
    try:
        config = lifecycle.resolve_config(kind, values)
    except RunError as error:
        context["estimate_error"] = str(error)
        return context
    context["estimate"] = sizing.estimate(session, kind=kind, project=project, config=config, worker=worker)
    return context


@router.get("/runs/estimate", include_in_schema=False)
def run_estimate(request: Request, session: SessionDep, user: AdminUser) -> Response:
    """The launch form's estimate for its current values (htmx, on every change)."""
    params = dict(request.query_params)
    try:
        kind = RunKind(params.get("kind", ""))
    except ValueError:
        raise HTTPException(422, "kind: unknown run kind") from None
    config = _form_config(kind, RunForm(**params))
    context = _estimate_context(session, kind, params.get("project"), config, workers.fastest_live(session))
    return render(request, "runs/_estimate.html", context)


@router.post("/runs", include_in_schema=False)
def create_run(
    request: Request, session: SessionDep, user: AdminUser, form: Annotated[RunForm, Form()]
) -> Response:
    try:
        kind = RunKind(form.kind)
    except ValueError:
        raise HTTPException(422, "kind: unknown run kind") from None
    config = _form_config(kind, form)
    state = {
        "project": form.project or None,
        "base_model_id": form.base_model_id or None,
        "reward_model_id": form.reward_model_id or None,
        "config": config,
    }
    project = projects.get_project(session, form.project)
    try:
        if project is None:
            raise RunError("choose a project")
        run = lifecycle.create_run(
            session,
            project=project,
            kind=kind,
            config=config,
            base_model_id=int_or_none(form.base_model_id),
            reward_model_id=int_or_none(form.reward_model_id),
            created_by_id=user.id,
        )
    except RunError as error:
        session.rollback()
        return _launch_page(request, session, kind, state, [str(error)], status_code=422)
    found = sizing.estimate(session, kind=kind, project=project, config=run.config,
                            worker=workers.fastest_live(session))  # fmt: skip
    sizing.log_estimate(session, run, found)
    audit.record(
        session, audit.Actor.of(user, "web", request), "run.launch", target=("run", run.id),
        project=project, kind=kind.value,
    )  # fmt: skip
    session.commit()  # the task is sent only once the run row is committed
    run.celery_task_id = send_run(run.id, celery=request.app.state.celery)
    return RedirectResponse(f"/admin/runs/{run.id}", status_code=303)


def _status_context(session: Session, run: Run) -> dict[str, Any]:
    return {
        "run": run,
        "phase": sizing.current_phase(run),
        "cautions": sizing.run_cautions(session, run) if run.status.finished else [],
        "logs": lifecycle.recent_logs(session, run_id=run.id),
        "percent": (100.0 * run.step / run.total_steps) if run.total_steps else None,
        "output": session.get(ModelVersion, run.output_model_id) if run.output_model_id else None,
    }


@router.get("/runs/{run_id}", include_in_schema=False)
def show_run(request: Request, run_id: IdPath, session: SessionDep, user: AdminUser) -> Response:
    run = _run_or_404(session, run_id)
    context = _status_context(session, run) | {
        "project": session.get(Project, run.project_id),
        "base": session.get(ModelVersion, run.base_model_id) if run.base_model_id else None,
        "reward": session.get(ModelVersion, run.reward_model_id) if run.reward_model_id else None,
        "title": KIND_TITLES[run.kind],
        "config_models": _config_models(session, run),
    }
    return render(request, "runs/show.html", context)


def _config_models(session: Session, run: Run) -> dict[str, str]:
    """The model versions a run's config names (`*model_id` fields): field -> version name."""
    named = {}
    for key, value in run.config.items():
        if key.endswith("model_id") and isinstance(value, int):
            model = session.get(ModelVersion, value)
            named[key] = model.name if model else f"#{value} (deleted)"
    return named


@router.get("/runs/{run_id}/status", include_in_schema=False)
def run_status(request: Request, run_id: IdPath, session: SessionDep, user: AdminUser) -> Response:
    """The live part of the run page; it stops polling once the run has ended."""
    run = _run_or_404(session, run_id)
    return render(request, "runs/_status.html", _status_context(session, run))


@router.get("/runs/{run_id}/metrics", include_in_schema=False)
def run_metrics(run_id: IdPath, session: SessionDep, user: AdminUser, after: IdQuery = 0) -> Response:
    run = _run_or_404(session, run_id)
    series, last = lifecycle.metric_series(session, run_id=run.id, after_id=after)
    return JSONResponse({"series": series, "last": last, "finished": run.status.finished})


@router.post("/runs/{run_id}/cancel", include_in_schema=False)
def cancel_run(request: Request, run_id: IdPath, session: SessionDep, user: AdminUser) -> Response:
    run = _run_or_404(session, run_id)
    try:
        task_id = lifecycle.request_cancel(session, run=run)
    except RunError as error:
        raise HTTPException(409, str(error)) from None
    audit.record(session, audit.Actor.of(user, "web", request), "run.cancel", target=("run", run.id))
    session.commit()
    if task_id:
        revoke(task_id, celery=request.app.state.celery)
    if is_htmx(request):
        return render(request, "runs/_status.html", _status_context(session, run))
    return RedirectResponse(f"/admin/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/retry", include_in_schema=False)
def retry_run(request: Request, run_id: IdPath, session: SessionDep, user: AdminUser) -> Response:
    run = _run_or_404(session, run_id)
    try:
        again = lifecycle.retry_run(session, run=run, created_by_id=user.id)
    except RunError as error:
        raise HTTPException(409, str(error)) from None
    audit.record(
        session, audit.Actor.of(user, "web", request), "run.retry", target=("run", again.id), retried=run.id
    )
    session.commit()
    again.celery_task_id = send_run(again.id, celery=request.app.state.celery)
    return RedirectResponse(f"/admin/runs/{again.id}", status_code=303)
