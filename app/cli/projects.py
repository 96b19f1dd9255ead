"""`rlhf projects`: labeling projects (app/services/projects.py); app/cli/members.py adds
`rlhf projects members`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from app.cli._common import console, factory, fail
from app.db import session_scope
from app.models import Scale, SelectionStrategy

projects_cli = typer.Typer(help="Labeling projects.", no_args_is_help=True)


@projects_cli.command("add")
def add_project(
    slug: Annotated[str, typer.Argument(help="Short name used in URLs and commands.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    overlap: Annotated[int, typer.Option(help="Distinct raters per pair.")] = 1,
    scale: Annotated[Scale, typer.Option(help="five, three or two choice points.")] = Scale.five,
    flag: Annotated[list[str] | None, typer.Option(help="A flag raters can set (repeatable).")] = None,
    instructions_file: Annotated[
        Path | None, typer.Option(help="Markdown file with the raters' instructions.", exists=True)
    ] = None,
    rationale_required: Annotated[bool, typer.Option(help="Require a rationale.")] = False,
    gold_rate: Annotated[
        float, typer.Option(help="Share (0..1) of claims that draw an unseen gold pair.")
    ] = 0.0,
    max_overlap: Annotated[
        int | None, typer.Option(help="Adaptive overlap: split pairs get raters up to this many.")
    ] = None,
    tasks: Annotated[
        str,
        typer.Option(
            help="The task mix: kinds with relative weights, e.g. compare=0.7,write=0.3. Kinds: compare "
            "(pick the better of two responses), rank (order K responses), write (write the ideal next "
            "assistant turn), improve (edit a model's response), review (accept or reject written ones)."
        ),
    ] = "compare=1",
    writing_overlap: Annotated[int, typer.Option(help="Distinct writers per write or improve task.")] = 1,
    review_overlap: Annotated[int, typer.Option(help="Distinct reviewers per written demonstration.")] = 1,
    min_words: Annotated[int | None, typer.Option(help="Length guidance for writers: at least.")] = None,
    max_words: Annotated[int | None, typer.Option(help="Length guidance for writers: at most.")] = None,
    max_answer_chars: Annotated[int, typer.Option(help="The longest written answer accepted.")] = 20_000,
    rank_k: Annotated[
        int, typer.Option(help="Ranking tasks: the completions of one prompt a rater orders (3 to 9).")
    ] = 4,
    selection: Annotated[
        SelectionStrategy,
        typer.Option(
            help="Which open pair raters get next: arrival (newest first), random, uncertainty (the "
            "pairs the latest score run is least sure of first) or mix (uncertainty with a random share)."
        ),
    ] = SelectionStrategy.arrival,
    random_share: Annotated[
        float, typer.Option(help="Under --selection mix: the share (0..1) of claims served a random pair.")
    ] = 0.2,
) -> None:
    """Create a labeling project."""
    from pydantic import ValidationError

    from app.schemas.project import ProjectCreate
    from app.services import audit
    from app.services.projects import ProjectExists, create_project
    from app.task_kinds import InvalidMix, format_mix, parse_mix

    try:
        mix = parse_mix(tasks)
    except InvalidMix as error:
        raise fail(f"--tasks: {error}") from None
    try:
        project_in = ProjectCreate(
            task_mix=mix,
            writing_overlap=writing_overlap,
            review_overlap=review_overlap,
            min_words=min_words,
            max_words=max_words,
            max_answer_chars=max_answer_chars,
            rank_k=rank_k,
            selection_strategy=selection,
            random_share=random_share,
            slug=slug,
            name=name or slug,
            overlap=overlap,
            scale=scale,
            flags=flag or [],
            instructions=instructions_file.read_text(encoding="utf-8") if instructions_file else "",
            rationale_required=rationale_required,
            gold_rate=gold_rate,
            max_overlap=max_overlap,
        )
        with session_scope(factory()) as session:
            project = create_project(session, project_in=project_in)
            target = ("project", project.slug)
            audit.record(session, audit.Actor.cli(), "project.create", target=target, project=project)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise fail(problems) from None
    except ProjectExists as error:
        raise fail(str(error)) from None
    console.print(
        f"Created project [bold]{project.slug}[/bold] (overlap {project.overlap}; tasks {format_mix(mix)}; "
        f"pairs by {project.selection_strategy.value})."
    )


@projects_cli.command("list")
def list_projects() -> None:
    """List projects with their counts."""
    from app.services.stats import project_counts

    table = Table("slug", "name", "prompts", "pairs", "complete", "judgments", "demos", "overlap")
    with session_scope(factory()) as session:
        for c in project_counts(session):
            table.add_row(
                c.project.slug, c.project.name, str(c.prompts), str(c.pairs),
                str(c.pairs_complete), str(c.judgments), str(c.demonstrations), str(c.project.overlap),
            )  # fmt: skip
    console.print(table)


def register(cli: typer.Typer) -> None:
    cli.add_typer(projects_cli, name="projects")
