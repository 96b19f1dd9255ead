"""What the command groups share: the consoles, a session factory for the configured database
(which first checks that the database exists and has tables), and the one-line error exit."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings
from app.db import is_sqlite, make_engine, make_sessionmaker

console = Console()
err = Console(stderr=True)

_checked: set[str] = set()  # database URLs found migrated by this process


def factory(*, read_only: bool = False) -> sessionmaker[Session]:
    url = get_settings().database_url
    ensure_database(url)
    return make_sessionmaker(make_engine(url, pool_size=2), read_only=read_only)


def where(url: str) -> str:
    """The database as a person names it: a SQLite file's path, else the URL without password."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if is_sqlite(url) and parsed.database:
        return str(Path(parsed.database).resolve())
    return parsed.render_as_string(hide_password=True)


def missing_sqlite_file(url: str) -> Path | None:
    """The path of a SQLite database file that does not exist yet (None when it exists, or for
    other databases): connecting would create it empty."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database if is_sqlite(url) else None
    if not database or database == ":memory:" or Path(database).exists():
        return None
    return Path(database)


def ensure_database(url: str) -> None:
    """Exit with one line saying what to do when the database is missing, unreachable or has no
    tables. A missing SQLite file is left missing: commands that read never create an empty one."""
    if url in _checked:
        return
    from sqlalchemy.exc import DBAPIError

    from app import migrations

    upgrade = "run `rlhf db upgrade` (or scripts/run)"
    if missing_sqlite_file(url) is not None:
        raise fail(f"There is no database at {where(url)}: {upgrade}.")
    try:
        revision = migrations.current_revision(url)
    except DBAPIError as error:
        first_line = str(error.orig or error).strip().splitlines()[0]
        raise fail(f"Cannot open the database at {where(url)}: {first_line}") from None
    if revision is None:
        raise fail(f"The database at {where(url)} has no tables: {upgrade}.")
    _checked.add(url)


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def human_bytes(size: int | None) -> str:
    """1234567 -> '1.2 MB'; None -> 'unknown'."""
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
