"""Users: creating them, signing them in, their passwords, and the list admins see."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import generate_password, hash_password, password_problem, verify_password
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


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.role, User.username)))


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    """The active person this name (any case) and password belong to, or None. AI labelers own
    judgments but never sign in. The password is checked even for an unknown name, so the time
    taken does not tell which names exist."""
    user = session.scalars(
        select(User).where(func.lower(User.username) == username.strip().lower())
    ).one_or_none()
    if (
        not verify_password(user.password_hash if user else None, password)
        or user is None
        or not user.is_active
        or user.role == Role.judge
    ):
        return None
    return user


def change_password(user: User, *, current: str, new: str, confirm: str) -> str | None:
    """Set a user's own new password and end their other sessions; or say why not."""
    if not verify_password(user.password_hash, current):
        return "The current password is wrong."
    if new != confirm:
        return "The two new passwords differ."
    if new == current:
        return "Choose a password different from the current one."
    if problem := password_problem(new):
        return problem
    user.password_hash = hash_password(new)
    user.must_change_password = False
    user.session_epoch += 1  # other sessions of this account end here
    return None
