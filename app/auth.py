"""Passwords and login throttling: what the web, the CLI and the services share.

Browser sessions and CSRF tokens belong to the web (app.web.sessions).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
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
    """Failed logins counted two ways, both in the database (table ``login_failures``), so that
    every web process and every host behind the same database counts them together.

    * Per (username, client address): ``limit`` failures in ``window_s`` block that pair until
      the oldest of them leaves the window.
    * Per username, from all addresses together: after ``user_limit`` failures in
      ``user_window_s`` each further attempt waits ``base_delay_s`` after the latest failure,
      doubling with every failure up to ``max_delay_s``. Rotating addresses (or forged
      forwarding headers) therefore only slows the guessing down further, and the real user is
      never locked out for good: the wait is at most ``max_delay_s``, and refused attempts are
      not counted. The right password waits like a wrong one.

    Names are counted whether or not the account exists, so the answer never tells which names
    are taken.
    """

    def __init__(
        self,
        limit: int,
        window_s: float = 300.0,
        *,
        user_limit: int = 30,
        user_window_s: float = 3600.0,
        base_delay_s: float = 30.0,
        max_delay_s: float = 900.0,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.user_limit = user_limit
        self.user_window_s = user_window_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s

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
        wait = 0.0
        if len(recent) >= self.limit:
            # Allowed again once the oldest of the last `limit` failures leaves the window.
            wait = max(0.0, self.window_s - (now - recent[-1]).total_seconds())
        return max(wait, self._user_wait(session, name, now))

    def _user_wait(self, session: Session, name: str, now: datetime) -> float:
        failures, latest = session.execute(
            select(func.count(), func.max(LoginFailure.at)).where(
                LoginFailure.username == name,
                LoginFailure.at > now - timedelta(seconds=self.user_window_s),
            )
        ).one()
        if failures < self.user_limit or latest is None:
            return 0.0
        exponent = min(failures - self.user_limit, 30)
        delay = min(self.max_delay_s, self.base_delay_s * 2**exponent)
        return max(0.0, delay - (now - latest).total_seconds())

    def record_failure(self, session: Session, username: str, client: str) -> None:
        name, address = self._key(username, client)
        now = utcnow()
        session.add(LoginFailure(username=name, client=address, at=now))
        # Failures older than both windows count for nothing: drop them as they pass.
        oldest = now - timedelta(seconds=max(self.window_s, self.user_window_s))
        session.execute(delete(LoginFailure).where(LoginFailure.at <= oldest))

    def reset(self, session: Session, username: str, client: str) -> None:
        name, address = self._key(username, client)
        session.execute(
            delete(LoginFailure).where(LoginFailure.username == name, LoginFailure.client == address)
        )
