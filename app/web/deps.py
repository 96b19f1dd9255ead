"""Dependencies shared by the routes, declared once as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.config import Settings
from app.models import Project, Role, User
from app.services import membership, projects, tokens
from app.web.sessions import CSRF_FIELD, CSRF_HEADER, SAFE_METHODS, csrf_valid, session_user


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page: a plain snapshot for templates, valid after the session ends."""

    id: int
    username: str
    role: Role


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form, htmx gets HX-Redirect."""


class PasswordChangeRequired(Exception):
    """Logged in with a one-time password: every page but the password form waits for a new one."""


class Forbidden(Exception):
    def __init__(self, message: str = "Your role does not give access to this page.") -> None:
        super().__init__(message)


class CsrfFailed(Exception):
    pass


# Dependencies that do no I/O are `async def`: FastAPI then runs them on the event loop instead
# of handing each to the thread pool (a measurable cost on the rating path).


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; the transaction commits when the route returns normally."""
    with request.app.state.sessionmaker() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
# scope="function": the transaction commits before the response is sent. With the default
# scope FastAPI would send the response first, and a fast client could act on a pair (or a
# judgment) that is not stored yet.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_optional_user(request: Request, session: SessionDep) -> User | None:
    user = session_user(request, session)
    if user is None:
        return None
    request.state.user = Viewer(id=user.id, username=user.username, role=user.role)
    return user


OptionalUser = Annotated[User | None, Depends(get_optional_user)]


async def get_current_user(user: OptionalUser) -> User:
    if user is None:
        raise LoginRequired()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: Role) -> Callable[[User], Awaitable[User]]:
    allowed = frozenset(roles)

    async def check(user: CurrentUser) -> User:
        if user.must_change_password:
            raise PasswordChangeRequired()
        if user.role not in allowed:
            raise Forbidden()
        return user

    check.allowed_roles = allowed  # type: ignore[attr-defined]  # read by the route matrix test
    return check


RaterUser = Annotated[User, Depends(require_roles(Role.rater, Role.admin))]
AdminUser = Annotated[User, Depends(require_roles(Role.admin))]
StaffUser = Annotated[User, Depends(require_roles(Role.admin, Role.researcher))]


async def verify_csrf(request: Request) -> None:
    """Every state-changing request from a browser carries the session's CSRF token.

    htmx sends it as the X-CSRF-Token header (set once on <body>); plain forms as a hidden field.
    """
    if request.method in SAFE_METHODS:
        return
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # cached on the request: the route reads it again
            value = form.get(CSRF_FIELD)
            submitted = value if isinstance(value, str) else None
    if not csrf_valid(request, submitted):
        raise CsrfFailed()


# --- API tokens (/api/v1) -------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="An API token from /account/tokens.")


API_SCOPE = "export:read"  # what every /api/v1 route needs (all of them read exports)


def get_api_user(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """A researcher's or an admin's bearer token with the API's scope; a rater's token, or one
    without the scope, is refused (403)."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(401, "Missing bearer token.", headers=challenge)
    user = tokens.authenticate(session, credentials.credentials)
    if user is None:
        raise HTTPException(401, "Invalid or revoked token.", headers=challenge)
    if user.role not in (Role.researcher, Role.admin):
        raise Forbidden("API tokens work for researchers and admins only.")
    if API_SCOPE not in tokens.scopes(session, credentials.credentials):
        raise Forbidden(f"This token lacks the {API_SCOPE} scope.")
    return user


ApiUser = Annotated[User, Depends(get_api_user)]


def get_api_projects(
    session: SessionDep,
    user: ApiUser,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> frozenset[int] | None:
    """The project ids a project-scoped token may read (None: not scoped; the owner's rules)."""
    assert credentials is not None  # ApiUser answered 401 otherwise
    return tokens.project_scope(session, credentials.credentials)


ApiProjects = Annotated[frozenset[int] | None, Depends(get_api_projects)]


def project_or_404(session: Session, slug: str) -> Project:
    """The project named by a URL's slug (active or not), or a 404."""
    project = projects.get_project(session, slug)
    if project is None:
        raise HTTPException(404, "No project with this name.")
    return project


# The project dependencies come after the user in a route's parameters, so that the role check
# answers first and a stranger learns nothing of which projects exist. A project the user may not
# use is answered exactly like one that does not exist.


def get_project_dep(slug: str, session: SessionDep, user: CurrentUser) -> Project:
    """A project the user may read (admins: all; limited researchers: their own)."""
    project = project_or_404(session, slug)
    if not membership.can_export(session, user, project):
        raise HTTPException(404, "No project with this name.")
    return project


def get_active_project_dep(request: Request, slug: str, session: SessionDep, user: CurrentUser) -> Project:
    """Raters see only the projects that take judgments and that they may rate in. The project
    and the user's member rows are one statement (`membership.rating_seat`); the seat stays on
    `request.state.rating_seat`, so the workbench narrows the task mix without reading it again."""
    seat = membership.rating_seat(session, user, slug)
    if seat is None:
        raise HTTPException(404, "No active project with this name.")
    request.state.rating_seat = seat
    return seat.project


ProjectDep = Annotated[Project, Depends(get_project_dep)]
ActiveProjectDep = Annotated[Project, Depends(get_active_project_dep)]
