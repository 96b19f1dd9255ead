"""`rlhf db`: the database schema, migrated with Alembic (app/migrations.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli._common import console, err, factory, missing_sqlite_file, where
from app.config import get_settings

db_cli = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@db_cli.command("upgrade")
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the migrations up to REVISION (default: the newest)."""
    from app import migrations

    settings = get_settings()
    migrations.upgrade(settings.database_url, revision)
    console.print(f"Database at revision {migrations.current_revision(settings.database_url)}.")


@db_cli.command("current")
def current() -> None:
    """Show the database's revision and the newest one."""
    from app import migrations

    url = get_settings().database_url
    # No database file yet: say so rather than create an empty one by connecting.
    current = "none (no database file)" if missing_sqlite_file(url) else migrations.current_revision(url)
    console.print(f"database: {where(url)}\ncurrent: {current}  head: {migrations.head_revision(url)}")


@db_cli.command("tallies")
def tallies(
    repair: Annotated[
        bool, typer.Option("--repair", help="Rebuild every tally from the judgments (one transaction).")
    ] = False,
) -> None:
    """Check the judgment tallies behind the label-quality pages against a recount of the
    judgments (exit 1 when one differs), or rebuild them with --repair. The database keeps them
    itself; they drift only when judgments were written with its triggers off."""
    from rich.table import Table

    from app.db import session_scope
    from app.services import tallies as service

    if repair:
        with console.status("Recounting the judgments …"), session_scope(factory()) as session:
            written = service.rebuild(session)
        for name, rows in written.items():
            console.print(f"{name}: {rows:,} rows rebuilt")
        return
    with console.status("Recounting the judgments …"), session_scope(factory(read_only=True)) as session:
        checks = service.check(session)
    table = Table("tally", "rows", "wrong", title="Judgment tallies against a recount")
    for item in checks:
        table.add_row(item.table, f"{item.rows:,}", f"{item.wrong:,}" if item.wrong else "0")
    console.print(table)
    if not all(item.ok for item in checks):
        err.print("Some tallies differ from the judgments: run rlhf db tallies --repair.")
        raise typer.Exit(1)
    console.print("Every tally matches the judgments.")


def register(cli: typer.Typer) -> None:
    cli.add_typer(db_cli, name="db")
