"""The rater workbench: one task at a time (a pair to judge, or another kind from
app/task_kinds.py, drawn by app/services/rating/tasks.py), by mouse or keyboard, swapped in by htmx."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.models import Project, User
from app.services import membership, rating
from app.services.rating import PICK_LABELS, SCALE_PICKS, JudgmentInput, RatingError
from app.services.rating.assignment import pair_with_progress
from app.services.rating.tasks import Task, has_work, mix_for, next_task, rater_mix
from app.task_kinds import TASK_KINDS, TaskKind, TaskSpec
from app.web.deps import RaterUser, SessionDep, verify_csrf
from app.web.forms import AssignmentForm, JudgmentForm
from app.web.rater_request import RaterGate, in_one_thread, parse_form
from app.web.templating import is_htmx, render

router = APIRouter(prefix="/rate", tags=["rate"], dependencies=[Depends(verify_csrf)])

FLAG_KEYS = "qwertyio"  # flag n is toggled by FLAG_KEYS[n]
# The session key of a ranking withdrawn by a plain (no-JavaScript) undo: its order, shown again.
UNDONE_ORDER = "undone_order"
REVIEW_FLAG_KEYS = "qwetyiop"  # in a review "r" rejects


def _not_found() -> HTTPException:
    """A rater removed from the project mid-request: answered like a project that does not exist."""
    return HTTPException(404, "No active project with this name.")


def _workbench(
    request: Request,
    session: Session,
    project: Project,
    rater_id: int,
    *,
    notice: str | None = None,
    error: str | None = None,
    previous: JudgmentInput | None = None,
    status_code: int = 200,
    full_page: bool = False,
    assignment: Any = None,
    task: Task | None = None,
    answer: str | None = None,
    review: Any = None,
) -> Response:
    """Claim (or keep) the rater's current task and render it with their progress: a pair
    here, another kind through its table entry's view and template."""
    rater = session.get(User, rater_id)  # already in the session's identity map: no query
    paused = bool(rater is not None and rater.is_paused)
    mix = _rater_mix(request, session, project, rater_id)
    if task is None and assignment is not None:
        task = Task(TASK_KINDS[TaskKind.compare], assignment)
    if task is None and not paused:
        try:
            task = next_task(session, project, rater_id, mix=mix)
        except rating.NotAMember:
            raise _not_found() from None
    spec = task.spec if task is not None else _idle_spec(mix)
    view: Any
    if task is not None and spec.kind == TaskKind.compare:  # the common case: one statement
        view, progress = pair_with_progress(session, task.lease, project=project, rater_id=rater_id)
    else:
        view = spec.view(session, task.lease) if task is not None else None
        progress = spec.progress(session, project=project, rater_id=rater_id)
    picks = SCALE_PICKS[project.scale]
    context = {
        "project": project,
        "task": task,
        "task_template": spec.template,
        "keys": spec.keys,
        "view": view,
        "pair": view if spec.kind == TaskKind.compare else None,
        "progress": progress,
        "picks": [(key, pick, PICK_LABELS[pick]) for key, pick in enumerate(picks, start=1)],
        "flags": list(
            zip(REVIEW_FLAG_KEYS if spec.kind == TaskKind.review else FLAG_KEYS, project.flags, strict=False)
        ),
        "notice": notice,
        "error": error,
        "previous": previous,
        "answer": answer,  # an order (a ranking) or a written answer refused or withdrawn, shown again
        "review": review,  # a review that was refused, its choices kept
        "paused": paused,
    }
    template = "rate/page.html" if full_page else spec.template
    return render(request, template, context, status_code=status_code)


def _rater_mix(request: Request, session: Session, project: Project, rater_id: int) -> dict[TaskKind, float]:
    """The kinds the rater may be given here: from the member rows ActiveProjectDep read with the
    project (no query), else read now."""
    seat = getattr(request.state, "rating_seat", None)
    if isinstance(seat, membership.RatingSeat) and seat.project is project and seat.user_id == rater_id:
        return mix_for(project, seat.task_kinds)
    return rater_mix(session, project, rater_id)


def _idle_spec(mix: dict[TaskKind, float]) -> TaskSpec:
    """The kind whose page says there is nothing to do: pairs when the rater compares here (its
    page tells waiting from done), else the first kind they are given."""
    kinds = list(mix)
    return TASK_KINDS[TaskKind.compare if TaskKind.compare in kinds or not kinds else kinds[0]]


def _after_post(request: Request, slug: str) -> Response | None:
    """Plain form posts (no JavaScript) get a redirect back to the page."""
    if is_htmx(request):
        return None
    return RedirectResponse(f"/rate/{slug}", status_code=303)


@router.get("", include_in_schema=False)
def list_projects(request: Request, session: SessionDep, user: RaterUser) -> Response:
    rows = [
        (p, rating.progress(session, project=p, rater_id=user.id))
        for p in membership.rateable_projects(session, user)
    ]
    open_rows = [row for row in rows if row[1].remaining > 0 or has_work(session, row[0], user.id)]
    if len(open_rows) == 1 and len(rows) == 1:
        return RedirectResponse(f"/rate/{open_rows[0][0].slug}", status_code=303)
    return render(request, "rate/index.html", {"rows": rows})


@router.get("/{slug}", include_in_schema=False)
async def rate_page(request: Request, slug: str, _: RaterGate) -> Response:
    return await in_one_thread(request, slug, partial(_show, request))


def _show(request: Request, session: Session, user: User, project: Project) -> Response:
    undone = request.session.pop("undone", None)
    if undone:
        previous = JudgmentInput(**{**undone, "flags": tuple(undone["flags"])})
        return _workbench(
            request, session, project, user.id, full_page=not is_htmx(request), previous=previous,
            notice="Your last judgment was withdrawn. Change it and submit again.",
        )  # fmt: skip
    order = request.session.pop(UNDONE_ORDER, None)
    if order:
        return _workbench(
            request, session, project, user.id, full_page=not is_htmx(request), answer=order,
            notice="Your last ranking was withdrawn. Change it and submit again.",
        )  # fmt: skip
    return _workbench(request, session, project, user.id, full_page=not is_htmx(request))


@router.post("/{slug}/judgments", include_in_schema=False)
async def submit_judgment(request: Request, slug: str, _: RaterGate) -> Response:
    data = await request.form()  # parsed once: the CSRF check read it already when it had to
    return await in_one_thread(request, slug, partial(_submit, request, data))


def _submit(request: Request, fields: Any, session: Session, user: User, project: Project) -> Response:
    form = parse_form(JudgmentForm, fields)  # after the checks, as a `Form()` parameter was
    slug = project.slug
    data = JudgmentInput(
        assignment_id=form.assignment_id,
        pick=form.pick,
        both_bad=form.both_bad,
        flags=tuple(form.flags or ()),
        rationale=form.rationale,
    )
    if form.pick is None and not form.both_bad:  # "both bad" alone is a complete answer
        error: str | None = (
            "Choose which response is better first, or mark both as bad (keys shown under the choices)."
        )
        return _workbench(request, session, project, user.id, error=error, previous=data, status_code=422)
    try:
        _, created = rating.submit_judgment(session, project=project, rater_id=user.id, data=data)
    except rating.NotAMember:
        raise _not_found() from None
    except rating.InvalidJudgment as problem:
        session.rollback()
        return _workbench(
            request, session, project, user.id, error=str(problem), previous=data, status_code=422,
            full_page=not is_htmx(request),
        )  # fmt: skip
    except RatingError as problem:
        session.commit()  # keeps the lapsed mark on a refused late submit
        return _after_post(request, slug) or _workbench(
            request, session, project, user.id, notice=str(problem), status_code=problem.status_code
        )
    notice = None if created else "That answer was already saved."
    return _after_post(request, slug) or _workbench(request, session, project, user.id, notice=notice)


@router.post("/{slug}/skip", include_in_schema=False)
async def skip_pair(request: Request, slug: str, _: RaterGate) -> Response:
    data = await request.form()  # parsed once: the CSRF check read it already when it had to
    return await in_one_thread(request, slug, partial(_skip, request, data))


def _skip(request: Request, fields: Any, session: Session, user: User, project: Project) -> Response:
    form = parse_form(AssignmentForm, fields)  # after the checks, as a `Form()` parameter was
    slug = project.slug
    try:
        rating.skip(session, project=project, rater_id=user.id, assignment_id=form.assignment_id)
    except rating.NotAMember:
        raise _not_found() from None
    except RatingError as problem:
        return _workbench(
            request, session, project, user.id, notice=str(problem), status_code=problem.status_code,
            full_page=not is_htmx(request),
        )  # fmt: skip
    return _after_post(request, slug) or _workbench(request, session, project, user.id)


@router.post("/{slug}/undo", include_in_schema=False)
async def undo_judgment(request: Request, slug: str, _: RaterGate) -> Response:
    return await in_one_thread(request, slug, partial(_undo, request))


def _undo(request: Request, session: Session, user: User, project: Project) -> Response:
    settings = request.app.state.settings
    slug = project.slug
    try:
        undone = rating.undo_last(
            session,
            project=project,
            rater_id=user.id,
            window=timedelta(seconds=settings.undo_window_s),
        )
    except rating.NotAMember:
        raise _not_found() from None
    if undone is None:
        minutes = settings.undo_window_s // 60
        notice = f"Nothing to undo: only your last judgment of the past {minutes} minutes can be."
        return _after_post(request, slug) or _workbench(request, session, project, user.id, notice=notice)
    assignment, previous = undone
    if not is_htmx(request):
        # A redirect (so a reload cannot undo a second judgment) that still shows the answer.
        request.session["undone"] = {
            "assignment_id": previous.assignment_id, "pick": previous.pick,
            "both_bad": previous.both_bad, "flags": list(previous.flags),
            "rationale": previous.rationale[:1500],  # the session cookie holds at most ~4 KB
        }  # fmt: skip
        return RedirectResponse(f"/rate/{slug}", status_code=303)
    return _workbench(
        request,
        session,
        project,
        user.id,
        notice="Your last judgment was withdrawn. Change it and submit again.",
        previous=previous,
        assignment=assignment,
    )
