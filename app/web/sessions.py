"""Browser sessions and CSRF tokens.

The cookie (Starlette's SessionMiddleware: signed, HttpOnly, SameSite=Lax, Secure in production)
holds a random session token and the CSRF token; the server keeps the session itself, one row of
``web_sessions`` per login, keyed by the token's SHA-256. Every request looks that row up (with
its user) by primary key, so a session ended server-side (logout, password change, deactivation,
an admin's "sign out everywhere") stops working at once, even in a copied cookie. A session also
ends when unused for ``SESSION_IDLE_TIMEOUT_S`` and at ``SESSION_MAX_AGE_S`` after login.
``last_seen_at`` is written at most once a minute, not on every request.

The CSRF token lives next to the session token in the same signed cookie and is replaced at
login, so it is bound to the session it was issued with.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.models.types import utcnow
from app.models.user import User, WebSession

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# How stale ``last_seen_at`` may get before a request writes it again.
TOUCH_INTERVAL = timedelta(seconds=60)


def session_id(token: str) -> str:
    """The row id of a cookie's session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def start_session(request: Request, db: Session, *, user: User) -> WebSession:
    """Log a user in with a brand-new session (fresh token and CSRF token: no fixation)."""
    now = utcnow()
    token = secrets.token_urlsafe(32)
    row = WebSession(
        id=session_id(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=_settings(request).session_max_age_s),
        user_agent=request.headers.get("user-agent", "")[:200],
        address=(request.client.host if request.client else "")[:64],
    )
    db.add(row)
    request.session.clear()
    request.session.update({"sid": token, "csrf": secrets.token_urlsafe(32)})
    return row


def end_session(request: Request, db: Session) -> None:
    """End this browser's session server-side and clear its cookie."""
    token = request.session.get("sid")
    if isinstance(token, str):
        db.execute(
            update(WebSession)
            .where(WebSession.id == session_id(token), WebSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
    request.session.clear()


def session_user(request: Request, db: Session) -> User | None:
    """The active user whose live session this request's cookie names, or None (and the cookie
    is cleared). One primary-key lookup; ``last_seen_at`` is refreshed once a minute at most."""
    token = request.session.get("sid")
    if not isinstance(token, str):
        return None
    found = db.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.id == session_id(token))
    ).one_or_none()
    if found is not None and live_session(request, *found):
        return found[1]
    request.session.clear()
    return None


def session_liveness(
    request: Request,
    *,
    ended_at: datetime | None,
    expires_at: datetime,
    last_seen_at: datetime,
    user_active: bool,
    now: datetime,
) -> tuple[bool, bool]:
    """Whether a session with these times is live (not ended, not expired, not idle too long, its
    user active), and whether its ``last_seen_at`` is over a minute old and wants refreshing."""
    idle = timedelta(seconds=_settings(request).session_idle_timeout_s)
    if ended_at is None and now < expires_at and now - last_seen_at < idle and user_active:
        return True, now - last_seen_at >= TOUCH_INTERVAL
    return False, False


def live_session(request: Request, row: WebSession, user: User) -> bool:
    """Whether the session row is live (`session_liveness`); a live one's ``last_seen_at`` is
    refreshed when over a minute old."""
    now = utcnow()
    live, touch = session_liveness(
        request,
        ended_at=row.ended_at,
        expires_at=row.expires_at,
        last_seen_at=row.last_seen_at,
        user_active=user.is_active,
        now=now,
    )
    if touch:
        row.last_seen_at = now
    return live


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


def csrf_valid(request: Request, submitted: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected and submitted and hmac.compare_digest(str(expected), submitted))
