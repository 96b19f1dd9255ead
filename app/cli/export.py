"""`rlhf export comparisons|rankings|demos`: the same exports as the web page and the API, to a path.

-o PATH ending in .zip writes an archive (data files per split and README.md), a path ending in
.jsonl/.parquet/.csv writes one file with a `split` column, anything else a folder that
`datasets.load_dataset(PATH)` reads as it is.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err = Console(stderr=True)

export_cli = typer.Typer(
    help="Export labeled comparisons, rankings or demonstrations (JSONL, Parquet, CSV) with a dataset card.",
    no_args_is_help=True,
)


def register(cli: typer.Typer) -> None:
    cli.add_typer(export_cli, name="export")


Project = Annotated[str, typer.Option("--project", help="Project slug.")]
Output = Annotated[Path, typer.Option("-o", "--output", help="A .zip, a single data file, or a folder.")]
Fmt = Annotated[str, typer.Option("--format", help="jsonl, parquet or csv.")]
Layout = Annotated[str | None, typer.Option(help="Row layout (see --help of the API docs).")]
DateOpt = Annotated[datetime | None, typer.Option(help="UTC date or time.")]


def _run(kind: str, slug: str, output: Path, values: dict[str, Any]) -> None:
    from sqlalchemy import func, select

    from app.cli._common import factory as session_factory
    from app.config import get_settings
    from app.db import session_scope
    from app.models import Demonstration, Judgment, Project, RankingJudgment
    from app.schemas.export import ComparisonExport, DemoExport, RankingExport
    from app.services import audit, exporting

    values = {k: v for k, v in values.items() if v is not None and v != []}
    try:
        spec: ComparisonExport | RankingExport | DemoExport
        if kind == "demos":
            spec = DemoExport.model_validate(values)
        elif kind == "rankings":
            spec = RankingExport.model_validate(values)
        else:
            spec = ComparisonExport.model_validate(values)
    except ValidationError as error:
        err.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None
    settings = get_settings()
    factory = session_factory(read_only=True)
    with factory() as session:
        project = session.scalars(select(Project).where(Project.slug == slug)).one_or_none()
        if project is None:
            err.print(f"[red]error:[/red] no project {slug!r}")
            raise typer.Exit(1)
        try:
            if isinstance(spec, DemoExport):
                export = exporting.prepare_demos(
                    session, project=project, spec=spec, secret_key=settings.secret_key
                )
                table: Any = Demonstration
            elif isinstance(spec, RankingExport):
                export = exporting.prepare_rankings(
                    session, project=project, spec=spec, secret_key=settings.secret_key
                )
                table = RankingJudgment
            else:
                export = exporting.prepare_comparisons(
                    session, project=project, spec=spec, secret_key=settings.secret_key
                )
                table = Judgment
        except exporting.ExportError as error:
            err.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1) from None
        # The bar counts source rows: judgments (or demonstrations) of the project.
        total = session.scalar(select(func.count()).select_from(table).where(table.project_id == project.id))
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=False) as progress:
            task = progress.add_task(f"{slug} {kind}", total=total)
            read = 0

            def advance(_rows: int) -> None:
                nonlocal read
                now = {
                    "comparisons": export.stats.preference.judgments_read,
                    "rankings": export.stats.judgments,
                }.get(kind, export.stats.total)
                progress.update(task, completed=now)
                read = now

            suffix = output.suffix.lower()
            if suffix == ".zip":
                with tempfile.TemporaryDirectory() as tmp:
                    exporting.write_directory(export, tmp, progress=advance)
                    archive = shutil.make_archive(str(output.with_suffix("")), "zip", tmp)
                    Path(archive).replace(output)
            elif suffix in (".jsonl", ".parquet", ".csv"):
                if suffix != export.extension:
                    err.print(f"[red]error:[/red] {output} does not end in {export.extension}")
                    raise typer.Exit(2)
                exporting.write_file(export, output, progress=advance)
            else:
                exporting.write_directory(export, output, progress=advance)
            progress.update(task, completed=total)
        session.rollback()
        project_id = project.id
    with session_scope(session_factory()) as session:  # the export's read-only session writes nothing
        audit.record(
            session, audit.Actor.cli(), f"export.{export.kind}", target=("file", output.name),
            project=session.get(Project, project_id), format=spec.format, output=str(output),
        )  # fmt: skip
    stats = export.stats
    err.print(
        f"{stats.total:,} rows (train {stats.rows['train']:,}, test {stats.rows['test']:,}) -> {output}"
    )


@export_cli.command("comparisons")
def export_comparisons(
    project: Project,
    output: Output,
    format: Fmt = "jsonl",
    layout: Layout = None,
    aggregation: Annotated[str, typer.Option(help="majority, mean_strength or per_rater.")] = "majority",
    ties: Annotated[str, typer.Option(help="drop or ignore.")] = "drop",
    include_both_bad: Annotated[bool, typer.Option(help="Keep both-bad judgments as votes.")] = False,
    label_source: Annotated[str, typer.Option(help="human, ai, both, edit, human_edit or all.")] = "human",
    min_agreement: Annotated[float, typer.Option(help="Drop rows below this agreement.")] = 0.0,
    rater: Annotated[list[str] | None, typer.Option(help="Only this rater (repeatable).")] = None,
    exclude_flag: Annotated[list[str] | None, typer.Option(help="Drop judgments with this flag.")] = None,
    gold: Annotated[str, typer.Option(help="include, exclude or only.")] = "include",
    date_from: DateOpt = None,
    date_to: DateOpt = None,
    test_fraction: Annotated[float, typer.Option(help="Share of prompts in test.")] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    license: Annotated[str, typer.Option(help="License id for the card.")] = "other",
    metadata: Annotated[bool, typer.Option(help="Metadata columns.")] = True,
) -> None:
    """Preference rows (prompt, chosen, rejected, margin, agreement, metadata) for TRL."""
    _run(
        "comparisons",
        project,
        output,
        {
            "format": format,
            "layout": layout,
            "aggregation": aggregation,
            "ties": ties,
            "include_both_bad": include_both_bad,
            "label_source": label_source,
            "min_agreement": min_agreement,
            "raters": rater or [],
            "exclude_flags": exclude_flag or [],
            "gold": gold,
            "date_from": date_from,
            "date_to": date_to,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
            "license": license,
            "metadata": metadata,
        },
    )


@export_cli.command("rankings")
def export_rankings(
    project: Project,
    output: Output,
    format: Fmt = "jsonl",
    layout: Layout = None,
    label_source: Annotated[str, typer.Option(help="human, ai, both, edit, human_edit or all.")] = "human",
    rater: Annotated[list[str] | None, typer.Option(help="Only this rater (repeatable).")] = None,
    gold: Annotated[str, typer.Option(help="include, exclude or only.")] = "include",
    date_from: DateOpt = None,
    date_to: DateOpt = None,
    test_fraction: Annotated[float, typer.Option(help="Share of prompts in test.")] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    license: Annotated[str, typer.Option(help="License id for the card.")] = "other",
    metadata: Annotated[bool, typer.Option(help="Metadata columns.")] = True,
) -> None:
    """Rankings as they were labeled: prompt, K completions, each rater's ranks and all-bad line.
    The comparisons export holds the same rankings expanded into pairs."""
    _run(
        "rankings",
        project,
        output,
        {
            "format": format,
            "layout": layout,
            "label_source": label_source,
            "raters": rater or [],
            "gold": gold,
            "date_from": date_from,
            "date_to": date_to,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
            "license": license,
            "metadata": metadata,
        },
    )


@export_cli.command("demos")
def export_demos(
    project: Project,
    output: Output,
    format: Fmt = "jsonl",
    layout: Layout = None,
    source: Annotated[
        str, typer.Option(help="all, imported, written, improved or raters (written and improved).")
    ] = "all",
    include_pending: Annotated[bool, typer.Option(help="Also demonstrations not yet reviewed.")] = False,
    include_rejected: Annotated[bool, typer.Option(help="Also rejected demonstrations.")] = False,
    date_from: DateOpt = None,
    date_to: DateOpt = None,
    test_fraction: Annotated[float, typer.Option(help="Share of prompts in test.")] = 0.1,
    split_seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    license: Annotated[str, typer.Option(help="License id for the card.")] = "other",
    metadata: Annotated[bool, typer.Option(help="Metadata columns.")] = True,
) -> None:
    """Demonstrations as SFT messages (or prompt/response text), accepted ones unless told
    otherwise, each with its source, pseudonymous author and review."""
    _run(
        "demos",
        project,
        output,
        {
            "format": format,
            "layout": layout,
            "demonstration_source": source,
            "include_pending": include_pending,
            "include_rejected": include_rejected,
            "date_from": date_from,
            "date_to": date_to,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
            "license": license,
            "metadata": metadata,
        },
    )
