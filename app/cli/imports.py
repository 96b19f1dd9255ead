"""`rlhf import`: prompts, pairs, demonstrations and labeled preference data from a file, all or
nothing, with the upload page's size limit (app/services/importing/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli._common import console, err, factory, fail
from app.config import get_settings
from app.db import session_scope

import_cli = typer.Typer(
    help="Import prompts, pairs or demonstrations from JSONL or CSV (all or nothing).",
    no_args_is_help=True,
)


def _import(kind: str, file: Path, project_slug: str, tasks: str = "") -> None:
    from app.services import audit, importing, writing
    from app.services.projects import get_project

    kinds = _writing_kinds(tasks)
    limit = get_settings().max_upload_bytes
    if file.stat().st_size > limit:  # the upload page's limit and message
        raise fail(f"{file.name} is larger than the {limit / (1024 * 1024):g} MB limit (MAX_UPLOAD_BYTES).")
    data = file.open("rb")  # JSONL is read line by line, never whole
    try:
        with data, session_scope(factory()) as session:
            project = get_project(session, project_slug)
            if project is None:
                raise fail(f"no project {project_slug!r} (see `rlhf projects list`)")
            with console.status(f"Importing {file.name}…"):
                if kind == "preferences":
                    report = importing.import_preferences(
                        session, project=project, filename=file.name, data=data
                    )
                else:
                    report = importing.import_file(
                        session,
                        project=project,
                        kind=importing.ImportKind(kind),
                        filename=file.name,
                        data=data,
                    )
            audit.record(session, audit.Actor.cli(), "project.import", target=("file", file.name),
                         project=project, kind=kind)  # fmt: skip
            made = 0
            if kinds:
                made = writing.add_project_tasks(
                    session, project, write="write" in kinds, improve="improve" in kinds
                )
    except importing.ImportFailed as failure:
        err.print(f"[red]{file}: not imported, {len(failure.problems)} problem(s); nothing was stored.[/red]")
        for problem in failure.problems[:50]:
            err.print(f"  {problem}", highlight=False)
        if len(failure.problems) > 50:
            err.print(f"  … and {len(failure.problems) - 50} more")
        raise typer.Exit(1) from None
    console.print(
        f"{file.name}: {report.rows} rows, {report.created} {kind} created, "
        f"{report.created_prompts} new prompts, {len(report.duplicates)} duplicates skipped."
    )
    for duplicate in report.duplicates[:20]:
        console.print(f"  skipped: {duplicate}", highlight=False)
    if tasks:
        console.print(f"{made} writing task(s) created ({tasks}).")


def _writing_kinds(tasks: str) -> set[str]:
    kinds = {kind.strip() for kind in tasks.split(",") if kind.strip()}
    unknown = kinds - {"write", "improve"}
    if unknown:
        raise fail(f"--tasks: unknown writing task kind {sorted(unknown)[0]!r} (write, improve)")
    return kinds


_TASKS = Annotated[
    str,
    typer.Option(
        "--tasks",
        help="Also make writing tasks: write (raters write the response to every prompt of the "
        "project), improve (raters edit every completion), or write,improve.",
    ),
]


_FILE = Annotated[Path, typer.Argument(help="A .jsonl or .csv file.", exists=True, dir_okay=False)]
_PROJECT = Annotated[str, typer.Option("--project", help="Project slug.")]


@import_cli.command("prompts")
def import_prompts(file: _FILE, project: _PROJECT, tasks: _TASKS = "") -> None:
    """Prompts: a `prompt` string or a `messages` list per row (--tasks write: for writers)."""
    _import("prompts", file, project, tasks)


@import_cli.command("pairs")
def import_pairs(file: _FILE, project: _PROJECT, tasks: _TASKS = "") -> None:
    """Pairs: prompt/messages, completion_a, completion_b [, model_a, model_b, gold]."""
    _import("pairs", file, project, tasks)


@import_cli.command("preferences")
def import_preferences(file: _FILE, project: _PROJECT) -> None:
    """Labeled preference data: TRL prompt/chosen/rejected or HH-RLHF transcripts (.jsonl/.parquet)."""
    _import("preferences", file, project)


@import_cli.command("demos")
def import_demos(file: _FILE, project: _PROJECT) -> None:
    """Demonstrations for SFT: prompt/messages and response."""
    _import("demos", file, project)


@import_cli.command("rankings")
def import_rankings(file: _FILE, project: _PROJECT) -> None:
    """Rankings: prompt/messages and completions (the project's rank_k texts) [, models, gold_ranks]."""
    _import("rankings", file, project)


def register(cli: typer.Typer) -> None:
    cli.add_typer(import_cli, name="import")
