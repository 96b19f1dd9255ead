"""The researchers' REST API under /api/v1: bearer tokens from /account/tokens, JSON errors.

Exports stream: the download starts with the first batch of rows, whatever the size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from app.models import User
from app.schemas.export import ComparisonExport, DemoExport, ProjectPublic, ProjectsPublic
from app.services import audit, exporting, membership, stats
from app.services.exporting.columns import ExportError
from app.services.exporting.prepare import PreparedExport
from app.web.deps import ApiProjects, ApiUser, SessionDep, SettingsDep
from app.web.routes.export import builder, streaming_download


class FieldProblem(BaseModel):
    field: str
    message: str


class ApiError(BaseModel):
    """Every error of the API: a sentence, or one problem per invalid parameter (422)."""

    detail: str | list[FieldProblem]


_ERRORS = {
    401: "Missing, invalid or revoked bearer token.",
    403: "The token's owner is not a researcher or an admin, or the token lacks the export:read scope.",
    404: "No project with this name.",
    422: "Invalid parameters: which one and why.",
}
router = APIRouter(
    prefix="/api/v1",
    tags=["api"],
    responses={status: {"model": ApiError, "description": text} for status, text in _ERRORS.items()},
)

_SPLIT = "Which split to download; `all` adds a `split` column (with metadata on)."


# The query is one model (its fields are the parameters, and any other parameter is refused), so
# the single-file downloads' `split` belongs to the model rather than beside it.
class ComparisonFileExport(ComparisonExport):
    split: Literal["all", "train", "test"] = Field("all", description=_SPLIT)


class DemoFileExport(DemoExport):
    split: Literal["all", "train", "test"] = Field("all", description=_SPLIT)


_FILE = {
    "description": "The data file (JSONL, Parquet or CSV, by `format`), streamed.",
    "content": {
        "application/x-ndjson": {"schema": {"type": "string"}},
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        "text/csv": {"schema": {"type": "string"}},
    },
}
_ZIP = {
    "description": "A zip: README.md (dataset card) and data/<split>.<ext>.",
    "content": {"application/zip": {}},
}


def _checked(call):  # type: ignore[no-untyped-def]
    try:
        return call()
    except ExportError as error:
        raise HTTPException(422, str(error)) from None


def _download(
    request: Request,
    session: Session,
    user: User,
    build: Callable[[Session], PreparedExport],
    *,
    archive: bool,
    split: str = "all",
) -> StreamingResponse:
    """Stream an export to an API client, recorded as the token's use (actor kind `api`)."""
    actor = audit.Actor.of(user, "api", request)
    return _checked(
        lambda: streaming_download(request, session, build, archive=archive, split=split, actor=actor)
    )


@router.get("/projects", response_model=ProjectsPublic, summary="List projects")
def read_projects(session: SessionDep, user: ApiUser, scope: ApiProjects) -> ProjectsPublic:
    """The projects this token may read."""
    return ProjectsPublic(
        data=[
            ProjectPublic(
                slug=c.project.slug,
                name=c.project.name,
                judgments=c.judgments,
                pairs=c.pairs,
                demonstrations=c.demonstrations,
            )
            for c in stats.project_counts(
                session, membership.exportable_projects(session, user, token_projects=scope)
            )
        ]
    )


@router.get(
    "/projects/{slug}/comparisons",
    summary="Export labeled comparisons as one file",
    response_class=StreamingResponse,
    responses={200: _FILE},
)
def export_comparisons(
    request: Request,
    slug: str,
    spec: Annotated[ComparisonFileExport, Query()],
    session: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
    scope: ApiProjects,
) -> StreamingResponse:
    """Preference rows (prompt, chosen, rejected, margin, agreement, metadata) under the
    aggregation rules given; see the dataset card (`/card`) for the rules in words."""
    build = builder("comparisons", spec, slug, settings.secret_key, user_id=user.id, token_projects=scope)
    return _download(request, session, user, build, archive=False, split=spec.split)


@router.get(
    "/projects/{slug}/comparisons/archive",
    summary="Export labeled comparisons as a zip with a dataset card",
    response_class=StreamingResponse,
    responses={200: _ZIP},
)
def export_comparisons_archive(
    request: Request,
    slug: str,
    spec: Annotated[ComparisonExport, Query()],
    session: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
    scope: ApiProjects,
) -> StreamingResponse:
    build = builder("comparisons", spec, slug, settings.secret_key, user_id=user.id, token_projects=scope)
    return _download(request, session, user, build, archive=True)


# The card is text, its errors JSON: declared one by one (a `model` would take the text type).
_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}


@router.get(
    "/projects/{slug}/comparisons/card",
    summary="The dataset card of a comparisons export",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "The dataset card (Markdown).", "content": {"text/markdown": {}}},
        **{status: {"description": _ERRORS[status], "content": _JSON_ERROR} for status in _ERRORS},
    },
)
def read_comparisons_card(
    slug: str,
    spec: Annotated[ComparisonExport, Query()],
    session: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
    scope: ApiProjects,
) -> PlainTextResponse:
    export = _checked(
        lambda: builder(
            "comparisons", spec, slug, settings.secret_key, user_id=user.id, token_projects=scope
        )(session)
    )
    _, card = exporting.preview(export, limit=0)
    return PlainTextResponse(card, media_type="text/markdown; charset=utf-8")


@router.get(
    "/projects/{slug}/demos",
    summary="Export demonstrations (SFT) as one file",
    response_class=StreamingResponse,
    responses={200: _FILE},
)
def export_demos(
    request: Request,
    slug: str,
    spec: Annotated[DemoFileExport, Query()],
    session: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
    scope: ApiProjects,
) -> StreamingResponse:
    build = builder("demos", spec, slug, settings.secret_key, user_id=user.id, token_projects=scope)
    return _download(request, session, user, build, archive=False, split=spec.split)


@router.get(
    "/projects/{slug}/demos/archive",
    summary="Export demonstrations as a zip with a dataset card",
    response_class=StreamingResponse,
    responses={200: _ZIP},
)
def export_demos_archive(
    request: Request,
    slug: str,
    spec: Annotated[DemoExport, Query()],
    session: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
    scope: ApiProjects,
) -> StreamingResponse:
    build = builder("demos", spec, slug, settings.secret_key, user_id=user.id, token_projects=scope)
    return _download(request, session, user, build, archive=True)
