"""Browser sessions and CSRF tokens.

Sessions are signed cookies (Starlette's SessionMiddleware, HttpOnly, SameSite=Lax, Secure in
production) holding the user id, the user's session epoch and a CSRF token. Bumping
``User.session_epoch`` (password change, deactivation) ends every older session. Every request
loads the user row, so a deactivated account stops working at once.
"""

from __future__ import annotations

import hmac
import secrets
import time

from fastapi import Request

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def start_session(request: Request, *, user_id: int, epoch: int) -> None:
    """Log a user in with a brand-new session (fresh CSRF token: no fixation)."""
    request.session.clear()
    request.session.update(
        {"uid": user_id, "epoch": epoch, "csrf": secrets.token_urlsafe(32), "at": int(time.time())}
    )


def end_session(request: Request) -> None:
    request.session.clear()


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


def csrf_valid(request: Request, submitted: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected and submitted and hmac.compare_digest(str(expected), submitted))
