"""`rlhf projects members`, `rlhf groups` and `rlhf users projects`: who rates in, and who reads,
which project. The same rules and service as the admin pages (app/services/membership.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from app.cli._common import console, factory, fail
from app.cli.projects import projects_cli
from app.cli.users import users_cli
from app.db import session_scope
from app.models import Visibility

groups_cli = typer.Typer(
    help="Rater groups: added to members-only projects as one member.", no_args_is_help=True
)

Names = Annotated[list[str] | None, typer.Option(help="A username (repeatable).")]


def members(
    slug: Annotated[str, typer.Argument(help="Project slug.")],
    add: Annotated[list[str] | None, typer.Option("--add", help="Add this user (repeatable).")] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Remove this user (repeatable).")
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", help="Add this rater group (repeatable).")
    ] = None,
    remove_group: Annotated[
        list[str] | None, typer.Option("--remove-group", help="Remove this rater group (repeatable).")
    ] = None,
    visibility: Annotated[
        Visibility | None, typer.Option(help="open: every rater; members: its members only.")
    ] = None,
    tasks: Annotated[
        str | None,
        typer.Option(
            help="The task kinds the users and groups added get, e.g. write,improve (default: every "
            "kind of the project's mix); naming a member again sets theirs."
        ),
    ] = None,
) -> None:
    """Show or change who rates in a project. Removing a member (or restricting the project) ends
    the reservations of raters who no longer belong; their judgments stay."""
    from app.services import audit, membership
    from app.services.projects import get_project

    try:
        with session_scope(factory()) as session:
            project = get_project(session, slug)
            if project is None:
                raise fail(f"no project {slug!r}")
            released = 0
            actor = audit.Actor.cli()
            target = ("project", project.slug)
            if add or group:
                kinds = None if tasks is None else [k.strip() for k in tasks.split(",") if k.strip()]
                membership.add_members(
                    session, project, usernames=add or [], groups=group or [], task_kinds=kinds
                )
                audit.record(session, actor, "project.members.add", target=target, project=project,
                             users=sorted(add or []), groups=sorted(group or []),
                             task_kinds=kinds)  # fmt: skip
            elif tasks is not None:
                raise fail("--tasks applies to the users and groups named with --add or --group")
            if remove or remove_group:
                membership.remove_members(session, project, usernames=remove or [], groups=remove_group or [])
                audit.record(session, actor, "project.members.remove", target=target, project=project,
                             users=sorted(remove or []), groups=sorted(remove_group or []))  # fmt: skip
            if visibility is not None:
                released = membership.set_visibility(session, project, visibility)
                audit.record(session, actor, "project.visibility", target=target, project=project,
                             visibility=visibility.value)  # fmt: skip
            else:
                released = membership.release_outsiders(session, [project.id])
            rows = membership.list_members(session, project)
            shown = project.visibility.value
    except membership.MembershipError as error:
        raise fail(str(error)) from None
    who = "every rater" if shown == "open" else "its members only"
    console.print(f"[bold]{slug}[/bold] is {shown}: {who} rate(s) there.")
    if released:
        console.print(f"Released {released} reservation(s) of raters no longer in the project.")
    table = Table("member", "kind", "tasks", "added")
    for row in rows:
        shown_kinds = ",".join(row.task_kinds) if row.task_kinds else "all"
        table.add_row(row.name, row.role, shown_kinds, row.added_at.strftime("%Y-%m-%d %H:%M UTC"))
    console.print(table if rows else "No members.")


@groups_cli.command("list")
def list_groups() -> None:
    """List rater groups, their raters and their projects."""
    from app.services import membership

    table = Table("group", "raters", "projects")
    with session_scope(factory()) as session:
        for group in membership.list_groups(session):
            table.add_row(group.name, ", ".join(group.members), ", ".join(group.projects))
    console.print(table)


@groups_cli.command("create")
def create_group(name: Annotated[str, typer.Argument(help="Group name (lowercase).")]) -> None:
    """Create a rater group."""
    from app.services import audit, membership

    try:
        with session_scope(factory()) as session:
            membership.create_group(session, name)
            audit.record(session, audit.Actor.cli(), "group.create", target=("group", name.strip().lower()))
    except membership.MembershipError as error:
        raise fail(str(error)) from None
    console.print(f"Created group [bold]{name.strip().lower()}[/bold].")


def _group(session, name: str):  # type: ignore[no-untyped-def]
    from app.services import membership

    group = membership.group_named(session, name)
    if group is None:
        raise fail(f"no rater group {name!r}")
    return group


@groups_cli.command("delete")
def delete_group(name: Annotated[str, typer.Argument(help="Group name.")]) -> None:
    """Delete a group: its raters leave its projects (their judgments stay)."""
    from app.services import audit, membership

    with session_scope(factory()) as session:
        group = _group(session, name)
        membership.delete_group(session, group)
        audit.record(session, audit.Actor.cli(), "group.delete", target=("group", group.name))
    console.print(f"Deleted group {name}.")


@groups_cli.command("add")
def add_to_group(
    name: Annotated[str, typer.Argument(help="Group name.")],
    usernames: Annotated[list[str], typer.Argument(help="Raters to add.")],
) -> None:
    """Add raters to a group."""
    from app.services import audit, membership

    try:
        with session_scope(factory()) as session:
            group = _group(session, name)
            added = membership.add_to_group(session, group, usernames)
            audit.record(
                session, audit.Actor.cli(), "group.add", target=("group", group.name), users=sorted(usernames)
            )
    except membership.MembershipError as error:
        raise fail(str(error)) from None
    console.print(f"Added {added} rater(s) to {name}.")


@groups_cli.command("remove")
def remove_from_group(
    name: Annotated[str, typer.Argument(help="Group name.")],
    usernames: Annotated[list[str], typer.Argument(help="Raters to remove.")],
) -> None:
    """Take raters out of a group; their reservations in its projects end."""
    from app.services import audit, membership

    try:
        with session_scope(factory()) as session:
            group = _group(session, name)
            removed = membership.remove_from_group(session, group, usernames)
            audit.record(
                session,
                audit.Actor.cli(),
                "group.remove",
                target=("group", group.name),
                users=sorted(usernames),
            )
    except membership.MembershipError as error:
        raise fail(str(error)) from None
    console.print(f"Removed {removed} rater(s) from {name}.")


def researcher_projects(
    username: Annotated[str, typer.Argument(help="A researcher's username.")],
    all_projects: Annotated[
        bool,
        typer.Option(
            "--all/--members-only",
            help="Read every project, or only the projects the researcher is a member of.",
        ),
    ],
) -> None:
    """Let a researcher export every project, or only those they are a member of."""
    from sqlalchemy import select

    from app.models import User
    from app.services import audit, membership

    try:
        with session_scope(factory()) as session:
            user = session.scalars(
                select(User).where(User.username == username.strip().lower())
            ).one_or_none()
            if user is None:
                raise fail(f"no user {username!r}")
            membership.set_all_projects(session, user, all_projects)
            audit.record(session, audit.Actor.cli(), "user.projects", target=("user", user.username),
                         all_projects=all_projects)  # fmt: skip
    except membership.MembershipError as error:
        raise fail(str(error)) from None
    console.print(f"{username} reads {'every project' if all_projects else 'their projects only'}.")


def register(cli: typer.Typer) -> None:
    projects_cli.command("members")(members)
    users_cli.command("projects")(researcher_projects)
    cli.add_typer(groups_cli, name="groups")
