"""`rlhf db`: the database schema, migrated with Alembic (app/migrations.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli._common import console, missing_sqlite_file, where
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


def register(cli: typer.Typer) -> None:
    cli.add_typer(db_cli, name="db")
