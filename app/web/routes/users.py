"""User accounts for admins: the list, new accounts, password resets, deactivation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.models import Role, User
from app.services import users
from app.web.deps import AdminUser, SessionDep, verify_csrf
from app.web.forms import ActiveForm, UserForm
from app.web.templating import render

router = APIRouter(prefix="/admin/users", tags=["users"], dependencies=[Depends(verify_csrf)])


@router.get("", include_in_schema=False)
def list_users(request: Request, session: SessionDep, user: AdminUser) -> Response:
    return render(request, "admin/users.html", {"users": users.list_users(session), "roles": list(Role)})


@router.post("", include_in_schema=False)
def create_user(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    form: Annotated[UserForm, Form()],
) -> Response:
    try:
        created, password = users.create_user(session, username=form.username, role=form.role)
    except users.UserError as error:
        return render(
            request,
            "admin/users.html",
            {
                "users": users.list_users(session),
                "roles": list(Role),
                "error": str(error),
                "username": form.username,
            },  # fmt: skip
            status_code=422,
        )
    return render(request, "admin/one_time_password.html", {"account": created, "password": password})


def _user_or_404(session: Session, user_id: int) -> User:
    account = session.get(User, user_id)
    if account is None:
        raise HTTPException(404, "No such user.")
    return account


@router.post("/{user_id}/reset-password", include_in_schema=False)
def reset_password(request: Request, user_id: int, session: SessionDep, user: AdminUser) -> Response:
    account = _user_or_404(session, user_id)
    password = users.reset_password(session, user=account)
    return render(request, "admin/one_time_password.html", {"account": account, "password": password})


@router.post("/{user_id}/active", include_in_schema=False)
def set_user_active(
    user_id: int, session: SessionDep, user: AdminUser, form: Annotated[ActiveForm, Form()]
) -> Response:
    account = _user_or_404(session, user_id)
    if account.id == user.id and not form.active:
        raise HTTPException(422, "You cannot deactivate your own account.")
    users.set_active(session, user=account, active=form.active)
    return RedirectResponse("/admin/users", status_code=303)
