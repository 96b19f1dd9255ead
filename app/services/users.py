"""Users: creating them, signing them in, their passwords, ending their sessions, and the list
admins see."""

from __future__ import annotations

import re

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.auth import generate_password, hash_password, password_problem, verify_password
from app.models import Role, User
from app.models.types import utcnow
from app.models.user import WebSession

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
    end_sessions(session, user_id=user.id)
    session.flush()
    return password


def set_active(session: Session, *, user: User, active: bool) -> None:
    user.is_active = active
    if not active:
        end_sessions(session, user_id=user.id)
    session.flush()


def list_users(session: Session, role: Role | None = None) -> list[User]:
    """Every user (by role, then name), or those of one role by name."""
    query = select(User).order_by(User.role, User.username)
    if role is not None:
        query = query.where(User.role == role)
    return list(session.scalars(query))


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


def change_password(session: Session, user: User, *, current: str, new: str, confirm: str) -> str | None:
    """Set a user's own new password and end all their sessions (the caller starts a new one for
    the browser that made the change); or say why not."""
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
    end_sessions(session, user_id=user.id)
    return None


def end_sessions(session: Session, *, user_id: int) -> int:
    """End every live browser session of a user ("sign out everywhere"): copied cookies too.
    Returns how many were live."""
    now = utcnow()
    result = session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.ended_at.is_(None), WebSession.expires_at > now)
        .values(ended_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def live_session_counts(session: Session) -> dict[int, int]:
    """Sessions not ended nor past their lifetime, per user id (for the users page)."""
    rows = session.execute(
        select(WebSession.user_id, func.count())
        .where(WebSession.ended_at.is_(None), WebSession.expires_at > utcnow())
        .group_by(WebSession.user_id)
    )
    return {user_id: count for user_id, count in rows}
