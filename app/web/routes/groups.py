"""Rater groups and researchers' project limits, for admins: one page under /admin/users/groups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.models import RaterGroup, Role, User
from app.services import audit, membership, users
from app.web.deps import AdminUser, SessionDep, verify_csrf
from app.web.forms import AllProjectsForm, GroupForm, MembersForm
from app.web.input_guard import IdPath
from app.web.templating import render

router = APIRouter(prefix="/admin/users/groups", tags=["users"], dependencies=[Depends(verify_csrf)])

_BACK = "/admin/users/groups"


def _page(
    request: Request, session: Session, *, error: str | None = None, status_code: int = 200
) -> Response:
    researchers = users.list_users(session, Role.researcher)
    context = {"groups": membership.list_groups(session), "researchers": researchers, "error": error}
    return render(request, "admin/groups.html", context, status_code=status_code)


def _group_or_404(session: Session, group_id: int) -> RaterGroup:
    group = membership.get_group(session, group_id)
    if group is None:
        raise HTTPException(404, "No such group.")
    return group


@router.get("", include_in_schema=False)
def list_groups(request: Request, session: SessionDep, user: AdminUser) -> Response:
    return _page(request, session)


@router.post("", include_in_schema=False)
def create_group(
    request: Request, session: SessionDep, user: AdminUser, form: Annotated[GroupForm, Form()]
) -> Response:
    try:
        membership.create_group(session, form.name)
        audit.record(
            session,
            audit.Actor.of(user, "web", request),
            "group.create",
            target=("group", form.name.strip().lower()),
        )
    except membership.MembershipError as error:
        return _page(request, session, error=str(error), status_code=422)
    return RedirectResponse(_BACK, status_code=303)


def _change_members(
    request: Request, session: Session, user: User, group_id: int, usernames: str, *, add: bool
) -> Response:
    group = _group_or_404(session, group_id)
    try:
        names = membership.split_names(usernames)
        (membership.add_to_group if add else membership.remove_from_group)(session, group, names)
        audit.record(
            session,
            audit.Actor.of(user, "web", request),
            "group.add" if add else "group.remove",
            target=("group", group.name),
            users=names,
        )
    except membership.MembershipError as error:
        session.rollback()
        return _page(request, session, error=str(error), status_code=422)
    return RedirectResponse(_BACK, status_code=303)


@router.post("/{group_id}/members", include_in_schema=False)
def add_to_group(
    request: Request,
    group_id: IdPath,
    session: SessionDep,
    user: AdminUser,
    form: Annotated[MembersForm, Form()],
) -> Response:
    return _change_members(request, session, user, group_id, form.usernames, add=True)


@router.post("/{group_id}/members/remove", include_in_schema=False)
def remove_from_group(
    request: Request,
    group_id: IdPath,
    session: SessionDep,
    user: AdminUser,
    form: Annotated[MembersForm, Form()],
) -> Response:
    """Take raters out of the group; their leases in its projects end unless still members."""
    return _change_members(request, session, user, group_id, form.usernames, add=False)


@router.post("/{group_id}/delete", include_in_schema=False)
def delete_group(request: Request, group_id: IdPath, session: SessionDep, user: AdminUser) -> Response:
    group = _group_or_404(session, group_id)
    name = group.name
    membership.delete_group(session, group)
    audit.record(session, audit.Actor.of(user, "web", request), "group.delete", target=("group", name))
    return RedirectResponse(_BACK, status_code=303)


@router.post("/researchers/{user_id}", include_in_schema=False)
def set_researcher_projects(
    request: Request,
    user_id: IdPath,
    session: SessionDep,
    user: AdminUser,
    form: Annotated[AllProjectsForm, Form()],
) -> Response:
    """Let a researcher read every project, or only the projects they are a member of."""
    account = session.get(User, user_id)
    if account is None:
        raise HTTPException(404, "No such user.")
    try:
        membership.set_all_projects(session, account, form.all_projects)
        audit.record(
            session, audit.Actor.of(user, "web", request), "user.projects", target=("user", account.username),
            all_projects=form.all_projects,
        )  # fmt: skip
    except membership.MembershipError as error:
        return _page(request, session, error=str(error), status_code=422)
    return RedirectResponse(_BACK, status_code=303)
