"""`rlhf users`: accounts of raters, researchers and admins (app/services/users.py); app/cli/members.py
adds `rlhf users projects`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from app.cli._common import console, factory, fail
from app.db import session_scope
from app.models import Role

users_cli = typer.Typer(help="Accounts of raters, researchers and admins.", no_args_is_help=True)


@users_cli.command("add")
def add_user(
    name: Annotated[str, typer.Argument(help="Username.")],
    role: Annotated[Role, typer.Option(help="rater, researcher or admin.")] = Role.rater,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an account. Without --password-stdin a one-time password is generated and printed."""
    from app.services import audit
    from app.services.users import UserError, create_user

    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        with session_scope(factory()) as session:
            user, generated = create_user(session, username=name, role=role, password=password)
            audit.record(
                session, audit.Actor.cli(), "user.create", target=("user", user.username), role=role.value
            )
    except UserError as error:
        raise fail(str(error)) from None
    console.print(f"Created {user.role.value} [bold]{user.username}[/bold].")
    if generated:
        console.print(f"One-time password (shown once, changed at first login): {generated}")


@users_cli.command("list")
def list_users() -> None:
    """List accounts."""
    from sqlalchemy import select

    from app.models import User

    table = Table("username", "role", "active", "last login")
    with session_scope(factory()) as session:
        for user in session.scalars(select(User).order_by(User.role, User.username)):
            table.add_row(
                user.username,
                user.role.value,
                str(user.is_active),
                str(user.last_login_at or "never"),
            )
    console.print(table)


@users_cli.command("signout")
def sign_out_user(name: Annotated[str, typer.Argument(help="Username.")]) -> None:
    """End every browser session of an account at once (copied cookies too); it can log in again."""
    from sqlalchemy import func, select

    from app.models import User
    from app.services import audit
    from app.services.users import end_sessions

    with session_scope(factory()) as session:
        user = session.scalars(select(User).where(func.lower(User.username) == name.strip().lower())).first()
        if user is None:
            raise fail(f"no user {name!r} (see `rlhf users list`)")
        ended = end_sessions(session, user_id=user.id)
        audit.record(session, audit.Actor.cli(), "user.sign_out", target=("user", user.username))
    console.print(f"Ended {ended} session(s) of [bold]{user.username}[/bold].")


def register(cli: typer.Typer) -> None:
    cli.add_typer(users_cli, name="users")
