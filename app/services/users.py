"""Creating users and resetting their passwords."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import generate_password, hash_password, password_problem
from app.models import Role, User

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")


class UserError(ValueError):
    pass


def create_user(
    session: Session, *, username: str, role: Role, password: str | None = None
) -> tuple[User, str | None]:
    """Create a user. Without a password a one-time one is generated and returned (shown once);
    the user then has to choose their own at first login."""
    username = username.strip()
    if not USERNAME_RE.match(username):
        raise UserError(
            "Usernames have 2 to 64 characters: letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit."
        )
    taken = session.scalar(select(User.id).where(func.lower(User.username) == username.lower()))
    if taken is not None:
        raise UserError(f"The username {username!r} is taken.")
    generated = None
    if password is None:
        password = generated = generate_password()
    elif problem := password_problem(password):
        raise UserError(problem)
    user = User(
        username=username,
        role=role,
        password_hash=hash_password(password),
        must_change_password=generated is not None,
    )
    session.add(user)
    session.flush()
    return user, generated


def reset_password(session: Session, *, user: User) -> str:
    """Give the user a new one-time password and end their sessions."""
    password = generate_password()
    user.password_hash = hash_password(password)
    user.must_change_password = True
    user.session_epoch += 1
    session.flush()
    return password


def set_active(session: Session, *, user: User, active: bool) -> None:
    user.is_active = active
    if not active:
        user.session_epoch += 1
    session.flush()
