"""The rating path's request frame: GET /rate/{slug} and POST /rate/{slug}/judgments, the two
calls a rater makes for every judgment, and the pair workbench's skip and undo
(POST /rate/{slug}/skip, /undo) do all their database work in one worker thread.

FastAPI runs each synchronous dependency in the thread pool, one hand-over per dependency (the
session opened and closed, the user, the project, the route): on the rating path those
hand-overs cost more CPU than the route itself. Here the route is `async` and hands one function
to the pool (`in_one_thread`), which opens the session, checks who is asking, runs the route's
work, commits and renders. What it guarantees is what the dependencies guaranteed:

* The same checks in the same order: the router's CSRF check (on the event loop, before any of
  this), then the session (live, not ended, not expired, not idle, its user active; else the
  cookie is cleared and the answer is the login redirect), the password change, the role
  (`RATER_ROLES`), and only then the project: one missing, inactive or not the rater's is
  answered 404 like one that does not exist (app/services/membership.py's rules).
* The session with its user and the project with the rater's member rows are one statement
  (`_SESSION_SEAT`), not two; the session's times are read as plain columns (its last visit is
  written, once a minute at most, by an UPDATE of its own).
* The form is validated after those checks, as FastAPI did it when they were dependencies (a
  stranger's malformed post is answered by the login redirect or 403, not by 422).
* The transaction commits before the answer is sent, and rolls back when the work raises.
* The web app's pool does not ping connections (app/web/app.py): when the first statement finds its connection
  dead, nothing has been done yet and it runs again once on a fresh connection, so a database
  restart costs the rater no error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.db import is_disconnect
from app.models import Project, ProjectMember, RaterGroupMember, Role, User
from app.models.types import utcnow
from app.models.user import WebSession
from app.services import membership
from app.web.deps import Forbidden, LoginRequired, PasswordChangeRequired, Viewer
from app.web.sessions import session_id, session_liveness

RATER_ROLES = frozenset({Role.rater, Role.admin})

_groups_of_user = select(RaterGroupMember.group_id).where(RaterGroupMember.user_id == User.id)
# The session row with its user, and the active project named by the slug with the user's member
# rows in it (direct or through groups): one row per member row; the project's columns are NULL
# when there is no such project.
_SESSION_SEAT = (
    select(
        WebSession.ended_at,
        WebSession.expires_at,
        WebSession.last_seen_at,
        User,
        Project,
        ProjectMember.id,
        ProjectMember.task_kinds,
    )
    .join(User, User.id == WebSession.user_id)
    .outerjoin(Project, and_(Project.slug == bindparam("slug"), Project.is_active.is_(True)))
    .outerjoin(
        ProjectMember,
        and_(
            ProjectMember.project_id == Project.id,
            or_(ProjectMember.user_id == User.id, ProjectMember.group_id.in_(_groups_of_user)),
        ),
    )
    .where(WebSession.id == bindparam("sid"))
)
# A live session's last visit, written when over a minute old (`session_liveness`).
_TOUCH = update(WebSession).where(WebSession.id == bindparam("sid")).values(last_seen_at=bindparam("now"))


async def rater_gate() -> None:
    """Marks a route of this frame for the route matrix (tests/routes/test_authorization.py):
    the role check itself runs in `in_one_thread`, after the session is read."""


rater_gate.allowed_roles = RATER_ROLES  # type: ignore[attr-defined]
RaterGate = Annotated[None, Depends(rater_gate)]


def _open(request: Request, session: Session, slug: str) -> tuple[User, Project]:
    """The rater and the project, checked as `RaterUser` and `ActiveProjectDep` check them."""
    token = request.session.get("sid")
    if not isinstance(token, str):
        raise LoginRequired()
    sid = session_id(token)
    rows = session.execute(_SESSION_SEAT, {"sid": sid, "slug": slug}).all()
    if not rows:
        request.session.clear()
        raise LoginRequired()
    ended_at, expires_at, last_seen_at, user, *_ = rows[0]
    now = utcnow()
    live, touch = session_liveness(
        request,
        ended_at=ended_at,
        expires_at=expires_at,
        last_seen_at=last_seen_at,
        user_active=user.is_active,
        now=now,
    )
    if not live:
        request.session.clear()
        raise LoginRequired()
    if touch:
        session.execute(_TOUCH, {"sid": sid, "now": now})
    request.state.user = Viewer(id=user.id, username=user.username, role=user.role)
    if user.must_change_password:
        raise PasswordChangeRequired()
    if user.role not in RATER_ROLES:
        raise Forbidden()
    seat = membership.seat_from_rows(user, [(project, member, kinds) for *_, project, member, kinds in rows])
    if seat is None:
        raise HTTPException(404, "No active project with this name.")
    request.state.rating_seat = seat
    return user, seat.project


Work = Callable[[Session, User, Project], Response]


def _run(request: Request, slug: str, work: Work) -> Response:
    with request.app.state.sessionmaker() as session:
        try:
            try:
                user, project = _open(request, session, slug)
            except DBAPIError as error:
                if not is_disconnect(error):
                    raise
                # A pooled connection that died (a server restart; the pool pings none): nothing
                # was done yet, so the request starts again on a fresh one.
                session.rollback()
                user, project = _open(request, session, slug)
            response = work(session, user, project)
            session.commit()
        except BaseException:
            session.rollback()
            raise
    return response


async def in_one_thread(request: Request, slug: str, work: Work) -> Response:
    """Check the rater and the project, run `work(session, user, project)` and commit, all in
    one hand-over to the thread pool."""
    return await run_in_threadpool(_run, request, slug, work)


Form = TypeVar("Form", bound=BaseModel)


def parse_form(model: type[Form], data: Any) -> Form:
    """`model` from a parsed form as FastAPI's ``Form()`` reads it: list fields from every value
    of their name, an empty value as a missing one; errors answered as FastAPI answers them."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if "list" in str(field.annotation):
            found = [v for v in data.getlist(name) if v != ""]
            if found:
                values[name] = found
        else:
            value = data.get(name)
            if value is not None and value != "":
                values[name] = value
    try:
        return model.model_validate(values)
    except ValidationError as invalid:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in invalid.errors()]
        raise RequestValidationError(errors) from None
