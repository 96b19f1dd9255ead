"""The researcher's export page (form, preview, download), and the streaming download the API
shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.models import User
from app.schemas.export import ComparisonExport, DemoExport, RankingExport
from app.services import audit, exporting, membership
from app.services.exporting.columns import ExportError
from app.services.exporting.prepare import PreparedExport
from app.web.deps import SessionDep, SettingsDep, StaffUser, project_or_404, verify_csrf
from app.web.templating import render

router = APIRouter(tags=["export"], dependencies=[Depends(verify_csrf)])

_LIST_FIELDS = ("raters", "exclude_flags")
_DEMOS_ONLY = ("demonstration_source", "include_pending", "include_rejected")
# The form's aggregation fields, which a rankings export (one row per ranking) does not take.
_PAIR_ONLY = ("aggregation", "ties", "min_agreement", "include_both_bad", "exclude_flags")
_MEDIA = {
    ".jsonl": "application/x-ndjson",
    ".csv": "text/csv; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
    ".zip": "application/zip",
}


def builder(
    kind: str,
    spec: ComparisonExport | RankingExport | DemoExport,
    slug: str,
    secret_key: str,
    *,
    user_id: int,
    token_projects: frozenset[int] | None = None,
) -> Callable[[Session], PreparedExport]:
    """How to prepare the export on a given session (checked once, then run on the stream's own).

    A project the user (or their project-scoped token) may not read is a 404, as a missing one.
    """

    def build(session: Session) -> PreparedExport:
        project = project_or_404(session, slug)
        reader = session.get(User, user_id)
        if reader is None or not membership.can_export(
            session, reader, project, token_projects=token_projects
        ):
            raise HTTPException(404, "No project with this name.")
        if kind == "demos":
            assert isinstance(spec, DemoExport)
            return exporting.prepare_demos(session, project=project, spec=spec, secret_key=secret_key)
        if kind == "rankings":
            assert isinstance(spec, RankingExport)
            return exporting.prepare_rankings(session, project=project, spec=spec, secret_key=secret_key)
        assert isinstance(spec, ComparisonExport)
        return exporting.prepare_comparisons(session, project=project, spec=spec, secret_key=secret_key)

    return build


def streaming_download(
    request: Request,
    session: Session,
    build: Callable[[Session], PreparedExport],
    *,
    archive: bool,
    split: str = "all",
    actor: audit.Actor | None = None,
) -> StreamingResponse:
    """Check the export on the request's session, then stream it from a session of its own.

    The body is produced after the route returns, so it must not use the request's session.
    """
    export = build(session)  # raises ExportError / 404 before any byte is sent
    name = exporting.filename(export, archive=archive, split=split)
    if actor is not None:  # recorded with the request's transaction, before the stream starts
        audit.record(
            session, actor, f"export.{export.kind}", target=("file", name), project=export.project,
            format=export.spec.format, archive=archive, split=split,
        )  # fmt: skip
    # End the request's transaction now: on SQLite it holds the database lock that the
    # stream's own session needs (and the route has nothing more to write).
    session.commit()
    factory = request.app.state.readonly_sessionmaker  # never blocks raters' writes on SQLite

    def body() -> Iterator[bytes]:
        with factory() as own:
            prepared = build(own)
            if archive:
                yield from exporting.stream_archive(prepared)
            else:
                yield from exporting.stream_file(prepared, split=split)
            own.rollback()

    media = _MEDIA[".zip" if archive else export.extension]
    return StreamingResponse(
        body(), media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _form_spec(request: Request) -> tuple[str, ComparisonExport | RankingExport | DemoExport, str]:
    """The export form's GET parameters; empty fields mean 'not given'."""
    query = request.query_params
    kind = query.get("what", "comparisons")
    values: dict[str, Any] = {}
    for key, value in query.multi_items():
        if key in ("what", "project", "archive", "split") or value.strip() == "":
            continue
        if kind == "rankings" and key in _PAIR_ONLY:
            continue
        if (kind == "demos" and key not in DemoExport.model_fields) or (
            kind != "demos" and key in _DEMOS_ONLY
        ):
            continue  # the form's fields of the other kind of export
        if key in _LIST_FIELDS:
            values.setdefault(key, []).append(value)
        else:
            values[key] = value
    model: type[ComparisonExport] | type[RankingExport] | type[DemoExport] = ComparisonExport
    if kind == "demos":
        model = DemoExport
    elif kind == "rankings":
        model = RankingExport
    kind = kind if kind in ("demos", "rankings") else "comparisons"
    return kind, model.model_validate(values), query.get("project", "")


def _errors(error: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in error.errors()]


def _page_context(session: Session, user: User) -> dict[str, Any]:
    return {
        "projects": membership.exportable_projects(session, user),
        "comparison_defaults": ComparisonExport(),
        "demo_defaults": DemoExport(),
        "ranking_defaults": RankingExport(),
    }


@router.get("/export", include_in_schema=False)
def export_page(request: Request, session: SessionDep, user: StaffUser) -> Response:
    return render(
        request, "export/index.html", _page_context(session, user) | {"query": request.query_params}
    )


@router.get("/export/preview", include_in_schema=False)
def preview_export(request: Request, session: SessionDep, settings: SettingsDep, user: StaffUser) -> Response:
    try:
        kind, spec, slug = _form_spec(request)
        export = builder(kind, spec, slug, settings.secret_key, user_id=user.id)(session)
        rows, card = exporting.preview(export)
    except ValidationError as error:
        return render(request, "export/_preview.html", {"errors": _errors(error)}, status_code=422)
    except ExportError as error:
        return render(request, "export/_preview.html", {"errors": [str(error)]}, status_code=422)
    columns = [c.name for c in export.columns]
    return render(
        request,
        "export/_preview.html",
        {"rows": rows, "columns": columns, "card": card, "total": export.stats.total, "export": export},
    )


@router.get("/export/download", include_in_schema=False)
def download_export(
    request: Request, session: SessionDep, settings: SettingsDep, user: StaffUser
) -> Response:
    try:
        kind, spec, slug = _form_spec(request)
        build = builder(kind, spec, slug, settings.secret_key, user_id=user.id)
        archive = request.query_params.get("archive", "1") != "0"
        split = request.query_params.get("split", "all")
        if split not in ("all", "train", "test"):
            raise ExportError("split must be all, train or test")
        actor = audit.Actor.of(user, "web", request)
        return streaming_download(request, session, build, archive=archive, split=split, actor=actor)
    except ValidationError as error:
        message = "; ".join(_errors(error))
    except ExportError as error:
        message = str(error)
    return render(request, "error.html", {"title": "Invalid export", "message": message}, status_code=422)
