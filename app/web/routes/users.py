"""User accounts for admins: the list, new accounts, password resets, deactivation, and
signing a user out everywhere."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.models import Role, User
from app.services import audit, users
from app.web.deps import AdminUser, SessionDep, verify_csrf
from app.web.forms import ActiveForm, UserForm
from app.web.input_guard import IdPath
from app.web.templating import render

router = APIRouter(prefix="/admin/users", tags=["users"], dependencies=[Depends(verify_csrf)])


@router.get("", include_in_schema=False)
def list_users(request: Request, session: SessionDep, user: AdminUser) -> Response:
    return render(request, "admin/users.html", _page(session))


def _page(session: Session) -> dict[str, object]:
    return {
        "users": users.list_users(session),
        "roles": list(Role),
        "sessions": users.live_session_counts(session),
    }


@router.post("", include_in_schema=False)
def create_user(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    form: Annotated[UserForm, Form()],
) -> Response:
    try:
        created, password = users.create_user(session, username=form.username, role=form.role)
        audit.record(
            session, audit.Actor.of(user, "web", request), "user.create",
            target=("user", created.username), role=created.role.value,
        )  # fmt: skip
    except users.UserError as error:
        return render(
            request,
            "admin/users.html",
            {**_page(session), "error": str(error), "username": form.username},
            status_code=422,
        )
    return _secret_page(request, {"account": created, "password": password})


def _secret_page(request: Request, context: dict[str, object]) -> Response:
    """A page showing a one-time password: never stored by the browser or a proxy."""
    response = render(request, "admin/one_time_password.html", context)
    response.headers["Cache-Control"] = "no-store"
    return response


def _user_or_404(session: Session, user_id: int) -> User:
    account = session.get(User, user_id)
    if account is None:
        raise HTTPException(404, "No such user.")
    return account


@router.post("/{user_id}/reset-password", include_in_schema=False)
def reset_password(request: Request, user_id: IdPath, session: SessionDep, user: AdminUser) -> Response:
    account = _user_or_404(session, user_id)
    password = users.reset_password(session, user=account)
    audit.record(
        session,
        audit.Actor.of(user, "web", request),
        "user.reset_password",
        target=("user", account.username),
    )
    return _secret_page(request, {"account": account, "password": password})


@router.post("/{user_id}/signout", include_in_schema=False)
def sign_out_everywhere(user_id: IdPath, session: SessionDep, user: AdminUser) -> Response:
    """End every session of the account (copied cookies included); it can log in again."""
    account = _user_or_404(session, user_id)
    users.end_sessions(session, user_id=account.id)
    audit.record(session, audit.Actor.of(user, "web"), "user.sign_out", target=("user", account.username))
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/{user_id}/active", include_in_schema=False)
def set_user_active(
    user_id: IdPath, session: SessionDep, user: AdminUser, form: Annotated[ActiveForm, Form()]
) -> Response:
    account = _user_or_404(session, user_id)
    if account.id == user.id and not form.active:
        raise HTTPException(422, "You cannot deactivate your own account.")
    users.set_active(session, user=account, active=form.active)
    audit.record(
        session, audit.Actor.of(user, "web"), "user.activate" if form.active else "user.deactivate",
        target=("user", account.username),
    )  # fmt: skip
    return RedirectResponse("/admin/users", status_code=303)
