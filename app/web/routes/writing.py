"""The writing workbench's actions: drafts saved as the rater types (answered with the sanitised
preview), answers submitted, skips and undo of write and improve tasks, and reviews. The page
itself is /rate/<slug> (app/web/routes/rate.py), which shows whichever task comes next."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from app.models import Demonstration
from app.services import writing
from app.services.rating import InvalidJudgment, NotAMember, RatingError
from app.services.rating.tasks import Task
from app.task_kinds import TASK_KINDS, TaskKind
from app.web.deps import ActiveProjectDep, RaterUser, SessionDep, SettingsDep, verify_csrf
from app.web.forms import AssignmentForm, DraftForm, ReviewForm, WritingForm
from app.web.render import render_markdown
from app.web.routes.rate import _after_post, _not_found, _workbench
from app.web.templating import is_htmx

router = APIRouter(prefix="/rate", tags=["rate"], dependencies=[Depends(verify_csrf)])


@router.post("/{slug}/drafts", include_in_schema=False)
def save_draft(
    session: SessionDep, user: RaterUser, project: ActiveProjectDep, form: Annotated[DraftForm, Form()]
) -> Response:
    """Keeps the draft and answers with its sanitised preview (the same Markdown renderer as
    every other text on the site)."""
    text = form.text.replace("\r\n", "\n")  # a form's line ends, as the answer stores them
    try:
        writing.save_draft(
            session, project=project, rater_id=user.id, assignment_id=form.assignment_id, text=text
        )
    except NotAMember:
        raise _not_found() from None
    except RatingError as problem:
        session.rollback()
        return PlainTextResponse(f"Draft not saved: {problem}", status_code=problem.status_code)
    return HTMLResponse(str(render_markdown(text)))


@router.post("/{slug}/demonstrations", include_in_schema=False)
def submit_answer(
    request: Request,
    session: SessionDep,
    user: RaterUser,
    project: ActiveProjectDep,
    form: Annotated[WritingForm, Form()],
) -> Response:
    slug = project.slug
    try:
        _, created = writing.submit(
            session, project=project, rater_id=user.id, assignment_id=form.assignment_id,
            text=form.text, time_spent_ms=form.time_spent_ms,
        )  # fmt: skip
    except NotAMember:
        raise _not_found() from None
    except InvalidJudgment as problem:
        session.rollback()
        return _workbench(
            request, session, project, user.id, error=str(problem), answer=form.text, status_code=422,
            full_page=not is_htmx(request),
        )  # fmt: skip
    except RatingError as problem:
        session.commit()  # keeps the lapsed mark of a refused late submit
        return _workbench(
            request, session, project, user.id, notice=str(problem), status_code=problem.status_code,
            full_page=not is_htmx(request),
        )  # fmt: skip
    notice = "Saved. Thank you." if created else "That answer was already saved."
    return _after_post(request, slug) or _workbench(request, session, project, user.id, notice=notice)


@router.post("/{slug}/writing/skip", include_in_schema=False)
def skip_task(
    request: Request,
    session: SessionDep,
    user: RaterUser,
    project: ActiveProjectDep,
    form: Annotated[AssignmentForm, Form()],
) -> Response:
    try:
        writing.skip(session, project=project, rater_id=user.id, assignment_id=form.assignment_id)
    except NotAMember:
        raise _not_found() from None
    except RatingError as problem:
        return _workbench(
            request, session, project, user.id, notice=str(problem), status_code=problem.status_code,
            full_page=not is_htmx(request),
        )  # fmt: skip
    return _after_post(request, project.slug) or _workbench(request, session, project, user.id)


@router.post("/{slug}/writing/undo", include_in_schema=False)
def undo_answer(
    request: Request, session: SessionDep, settings: SettingsDep, user: RaterUser, project: ActiveProjectDep
) -> Response:
    try:
        lease = writing.undo_last(
            session, project=project, rater_id=user.id, window=timedelta(seconds=settings.undo_window_s)
        )
    except NotAMember:
        raise _not_found() from None
    if lease is None:
        minutes = settings.undo_window_s // 60
        notice = (
            f"Nothing to undo: only your last answer of the past {minutes} minutes, if nobody reviewed it."
        )
        return _after_post(request, project.slug) or _workbench(
            request, session, project, user.id, notice=notice
        )
    session.commit()
    if not is_htmx(request):
        return RedirectResponse(f"/rate/{project.slug}", status_code=303)  # the lease and draft are back
    kind = writing.view(session, lease).kind
    task = Task(TASK_KINDS[TaskKind(kind.value)], lease)
    notice = "Your last answer was withdrawn; it is back in the editor."
    return _workbench(request, session, project, user.id, task=task, notice=notice)


@router.post("/{slug}/reviews", include_in_schema=False)
def submit_review(
    request: Request,
    session: SessionDep,
    user: RaterUser,
    project: ActiveProjectDep,
    form: Annotated[ReviewForm, Form()],
) -> Response:
    demonstration = session.get(Demonstration, form.demonstration_id)
    error = None
    if not form.verdict:
        error = "Accept (a) or reject (r) the demonstration first."
    elif form.score is None:
        error = "Give a quality score from 1 to 5 first (keys 1-5)."
    if error is None:
        try:
            writing.submit_review(
                session, project=project, rater_id=user.id, demonstration_id=form.demonstration_id,
                accepted=form.verdict == "accept", score=int(form.score or 0), flags=tuple(form.flags or ()),
                note=form.note,
            )  # fmt: skip
        except NotAMember:
            raise _not_found() from None
        except InvalidJudgment as problem:
            session.rollback()
            error = str(problem)
        except RatingError as problem:
            session.rollback()
            return _workbench(request, session, project, user.id, notice=str(problem),
                              status_code=problem.status_code, full_page=not is_htmx(request))  # fmt: skip
        else:
            return _after_post(request, project.slug) or _workbench(request, session, project, user.id)
    task = None
    if (
        demonstration is not None
        and demonstration.project_id == project.id
        and demonstration.author_id != user.id
    ):
        task = Task(TASK_KINDS[TaskKind.review], demonstration)
    return _workbench(request, session, project, user.id, task=task, error=error, review=form,
                      status_code=422, full_page=not is_htmx(request))  # fmt: skip
