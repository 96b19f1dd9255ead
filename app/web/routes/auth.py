"""Login, logout and password change."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.models import Role
from app.models.types import utcnow
from app.services import users
from app.web.deps import CurrentUser, OptionalUser, SessionDep, verify_csrf
from app.web.forms import LoginForm, PasswordForm
from app.web.sessions import end_session, start_session
from app.web.templating import render

router = APIRouter(tags=["auth"], dependencies=[Depends(verify_csrf)])

HOME_BY_ROLE = {Role.rater: "/rate", Role.admin: "/admin", Role.researcher: "/projects"}


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths: an open redirect would help phishing."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@router.get("/", include_in_schema=False)
def home(user: OptionalUser) -> Response:
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(HOME_BY_ROLE[user.role], status_code=303)


@router.get("/login", include_in_schema=False)
def login_form(request: Request, user: OptionalUser, next: str | None = None) -> Response:
    if user is not None:
        return RedirectResponse(_safe_next(next) or HOME_BY_ROLE[user.role], status_code=303)
    return render(request, "login.html", {"next": _safe_next(next) or ""})


@router.post("/login", include_in_schema=False)
def login(request: Request, session: SessionDep, form: Annotated[LoginForm, Form()]) -> Response:
    throttle = request.app.state.login_throttle
    client = request.client.host if request.client else "unknown"
    username, next = form.username, form.next
    wait = throttle.blocked_for(session, username, client)
    if wait:
        return render(
            request,
            "login.html",
            {"error": f"Too many failed attempts. Try again in {int(wait) + 1} seconds.",
             "username": username, "next": next},
            status_code=429,
        )  # fmt: skip
    user = users.authenticate(session, username=username, password=form.password)
    if user is None:
        throttle.record_failure(session, username, client)
        return render(
            request,
            "login.html",
            {"error": "Wrong username or password.", "username": username, "next": next},
            status_code=401,
        )
    throttle.reset(session, username, client)
    user.last_login_at = utcnow()
    start_session(request, session, user=user)
    if user.must_change_password:
        return RedirectResponse("/account/password", status_code=303)
    return RedirectResponse(_safe_next(next) or HOME_BY_ROLE[user.role], status_code=303)


@router.post("/logout", include_in_schema=False)
def logout(request: Request, session: SessionDep) -> Response:
    end_session(request, session)
    return RedirectResponse("/login", status_code=303)


@router.get("/account/password", include_in_schema=False)
def password_form(request: Request, user: CurrentUser) -> Response:
    return render(request, "password.html", {"forced": user.must_change_password})


@router.post("/account/password", include_in_schema=False)
def change_password(
    request: Request, session: SessionDep, user: CurrentUser, form: Annotated[PasswordForm, Form()]
) -> Response:
    error = users.change_password(
        session, user, current=form.current_password, new=form.new_password, confirm=form.confirm_password
    )
    if error:
        return render(
            request,
            "password.html",
            {"forced": user.must_change_password, "error": error},
            status_code=422,
        )
    start_session(request, session, user=user)
    return RedirectResponse(HOME_BY_ROLE[user.role], status_code=303)
