"""`rlhf audit`: the audit log at the command line, with the admin page's filters
(app/services/audit.py); `--json` prints one event per line for scripts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from app.cli._common import console, factory
from app.db import session_scope

DateOpt = Annotated[
    datetime | None,
    typer.Option(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"], help="UTC date or time."),
]


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def audit_command(
    actor: Annotated[str | None, typer.Option(help="Only this actor (a username, or cli:NAME).")] = None,
    action: Annotated[
        str | None, typer.Option(help="Only actions starting with this (user, run.launch, ...).")
    ] = None,
    project: Annotated[str | None, typer.Option(help="Only this project (slug).")] = None,
    since: DateOpt = None,
    until: DateOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Who did what and when: the audit log, newest first."""
    from app.services import audit

    filters = audit.Filters(actor=actor, action=action, project=project, since=_utc(since), until=_utc(until))
    with session_scope(factory(read_only=True)) as session:
        found = audit.events(session, filters, limit=limit)
        slugs = audit.project_slugs(session, found)
        rows = [audit.as_dict(event, slugs) for event in found]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False, sort_keys=True))
        return
    if not rows:
        console.print("No events.")
        return
    table = Table("at (UTC)", "actor", "action", "target", "project", "details")
    for row in rows:
        details = ", ".join(f"{k}={v}" for k, v in sorted(row["details"].items()) if v is not None)
        table.add_row(row["at"][:19].replace("T", " "), row["actor"], row["action"], row["target"] or "",
                      row["project"] or "", details)  # fmt: skip
    console.print(table)


def register(cli: typer.Typer) -> None:
    cli.command("audit")(audit_command)
