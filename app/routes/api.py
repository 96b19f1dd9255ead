"""The researchers' REST API under /api/v1: bearer tokens from /account/tokens, JSON errors.

Exports stream: the download starts with the first batch of rows, whatever the size.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from app.deps import ApiUser, SessionDep, SettingsDep
from app.routes.export import builder, project_or_404, streaming_download
from app.schemas.export import ComparisonExport, DemoExport, ProjectPublic, ProjectsPublic
from app.services import exporting, stats
from app.services.exporting import ExportError

router = APIRouter(prefix="/api/v1", tags=["api"])

Split = Annotated[
    Literal["all", "train", "test"],
    Query(description="Which split to download; `all` adds a `split` column (with metadata on)."),
]
_FILE = {
    "description": "The data file (JSONL, Parquet or CSV), streamed.",
    "content": {"application/octet-stream": {}},
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


@router.get("/projects", response_model=ProjectsPublic, summary="List projects")
def read_projects(session: SessionDep, user: ApiUser) -> ProjectsPublic:
    return ProjectsPublic(
        data=[
            ProjectPublic(
                slug=c.project.slug,
                name=c.project.name,
                judgments=c.judgments,
                pairs=c.pairs,
                demonstrations=c.demonstrations,
            )
            for c in stats.project_counts(session)
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
    spec: Annotated[ComparisonExport, Query()],
    session: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
    split: Split = "all",
) -> StreamingResponse:
    """Preference rows (prompt, chosen, rejected, margin, agreement, metadata) under the
    aggregation rules given; see the dataset card (`/card`) for the rules in words."""
    build = builder("comparisons", spec, slug, settings.secret_key)
    return _checked(lambda: streaming_download(request, session, build, archive=False, split=split))


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
) -> StreamingResponse:
    build = builder("comparisons", spec, slug, settings.secret_key)
    return _checked(lambda: streaming_download(request, session, build, archive=True))


@router.get(
    "/projects/{slug}/comparisons/card",
    summary="The dataset card of a comparisons export",
    response_class=PlainTextResponse,
)
def read_comparisons_card(
    slug: str,
    spec: Annotated[ComparisonExport, Query()],
    session: SessionDep,
    settings: SettingsDep,
    user: ApiUser,
) -> PlainTextResponse:
    export = _checked(lambda: builder("comparisons", spec, slug, settings.secret_key)(session))
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
    spec: Annotated[DemoExport, Query()],
    session: SessionDep,
    user: ApiUser,
    split: Split = "all",
) -> StreamingResponse:
    project_or_404(session, slug)
    build = builder("demos", spec, slug, "")
    return _checked(lambda: streaming_download(request, session, build, archive=False, split=split))


@router.get(
    "/projects/{slug}/demos/archive",
    summary="Export demonstrations as a zip with a dataset card",
    response_class=StreamingResponse,
    responses={200: _ZIP},
)
def export_demos_archive(
    request: Request, slug: str, spec: Annotated[DemoExport, Query()], session: SessionDep, user: ApiUser
) -> StreamingResponse:
    build = builder("demos", spec, slug, "")
    return _checked(lambda: streaming_download(request, session, build, archive=True))
