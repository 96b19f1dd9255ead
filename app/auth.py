"""Passwords and login throttling: what the web, the CLI and the services share.

Browser sessions and CSRF tokens belong to the web (app.web.sessions).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models.types import utcnow
from app.models.user import LoginFailure

_hasher = PasswordHasher()
# Verifying against this hash when the username is unknown keeps response times uniform.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A one-time password: 16 characters from an unambiguous alphabet (~80 bits)."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(16))


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Passwords need at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > 256:
        return "Passwords may have at most 256 characters."
    return None


# --- login throttling -----------------------------------------------------------------------


class LoginThrottle:
    """Failed logins per (username, client address) in a sliding window.

    The failures live in the database (table ``login_failures``), so every web process and
    every host behind the same database counts them together: starting more workers does not
    multiply the attempts an attacker gets. Names are counted whether or not the account
    exists, so the answer never tells which names are taken.
    """

    def __init__(self, limit: int, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s

    @staticmethod
    def _key(username: str, client: str) -> tuple[str, str]:
        return username.strip().lower()[:64], client[:64]

    def _since(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.window_s)

    def blocked_for(self, session: Session, username: str, client: str) -> float:
        """Seconds until another attempt is allowed (0 when allowed now)."""
        name, address = self._key(username, client)
        now = utcnow()
        recent = session.scalars(
            select(LoginFailure.at)
            .where(
                LoginFailure.username == name,
                LoginFailure.client == address,
                LoginFailure.at > self._since(now),
            )
            .order_by(LoginFailure.at.desc())
            .limit(self.limit)
        ).all()
        if len(recent) < self.limit:
            return 0.0
        # Allowed again once the oldest of the last `limit` failures leaves the window.
        return max(0.0, self.window_s - (now - recent[-1]).total_seconds())

    def record_failure(self, session: Session, username: str, client: str) -> None:
        name, address = self._key(username, client)
        now = utcnow()
        session.add(LoginFailure(username=name, client=address, at=now))
        # Failures older than the window count for nothing: drop them as they pass.
        session.execute(delete(LoginFailure).where(LoginFailure.at <= self._since(now)))

    def reset(self, session: Session, username: str, client: str) -> None:
        name, address = self._key(username, client)
        session.execute(
            delete(LoginFailure).where(LoginFailure.username == name, LoginFailure.client == address)
        )
