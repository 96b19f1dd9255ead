"""The ranking workbench's actions: an order submitted (in the notation the page keeps in sync
with its cards, chips and keys), skips and undo. The page itself is /rate/<slug>
(app/web/routes/rate.py), which shows whichever task comes next."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.services.rating import InvalidJudgment, NotAMember, RatingError
from app.services.rating.ranking_judgments import format_order, skip_ranking, submit_order, undo_last_ranking
from app.services.rating.tasks import Task
from app.task_kinds import TASK_KINDS, TaskKind
from app.web.deps import ActiveProjectDep, RaterUser, SessionDep, SettingsDep, verify_csrf
from app.web.forms import AssignmentForm, RankingForm
from app.web.routes.rate import UNDONE_ORDER, _after_post, _not_found, _workbench
from app.web.templating import is_htmx

router = APIRouter(prefix="/rate", tags=["rate"], dependencies=[Depends(verify_csrf)])


@router.post("/{slug}/rankings", include_in_schema=False)
def submit_ranking(
    request: Request,
    session: SessionDep,
    user: RaterUser,
    project: ActiveProjectDep,
    form: Annotated[RankingForm, Form()],
) -> Response:
    try:
        _, created = submit_order(
            session, project=project, rater_id=user.id, assignment_id=form.assignment_id, order=form.order
        )
    except NotAMember:
        raise _not_found() from None
    except InvalidJudgment as problem:
        session.rollback()
        return _workbench(
            request, session, project, user.id, error=str(problem), answer=form.order, status_code=422,
            full_page=not is_htmx(request),
        )  # fmt: skip
    except RatingError as problem:
        session.commit()  # keeps the lapsed mark of a refused late submit
        return _workbench(
            request, session, project, user.id, notice=str(problem), status_code=problem.status_code,
            full_page=not is_htmx(request),
        )  # fmt: skip
    notice = None if created else "That order was already saved."
    return _after_post(request, project.slug) or _workbench(request, session, project, user.id, notice=notice)


@router.post("/{slug}/rankings/skip", include_in_schema=False)
def skip(
    request: Request,
    session: SessionDep,
    user: RaterUser,
    project: ActiveProjectDep,
    form: Annotated[AssignmentForm, Form()],
) -> Response:
    try:
        skip_ranking(session, project=project, rater_id=user.id, assignment_id=form.assignment_id)
    except NotAMember:
        raise _not_found() from None
    except RatingError as problem:
        return _workbench(
            request, session, project, user.id, notice=str(problem), status_code=problem.status_code,
            full_page=not is_htmx(request),
        )  # fmt: skip
    return _after_post(request, project.slug) or _workbench(request, session, project, user.id)


@router.post("/{slug}/rankings/undo", include_in_schema=False)
def undo(
    request: Request, session: SessionDep, settings: SettingsDep, user: RaterUser, project: ActiveProjectDep
) -> Response:
    try:
        undone = undo_last_ranking(
            session, project=project, rater_id=user.id, window=timedelta(seconds=settings.undo_window_s)
        )
    except NotAMember:
        raise _not_found() from None
    if undone is None:
        minutes = settings.undo_window_s // 60
        notice = f"Nothing to undo: only your last ranking of the past {minutes} minutes can be."
        return _after_post(request, project.slug) or _workbench(
            request, session, project, user.id, notice=notice
        )
    assignment, previous = undone
    order = format_order(previous.ranks, previous.cutoff_rank)
    if not is_htmx(request):
        # A redirect (a reload cannot undo a second order) that still shows the withdrawn one.
        request.session[UNDONE_ORDER] = order
        return RedirectResponse(f"/rate/{project.slug}", status_code=303)
    return _workbench(
        request, session, project, user.id, task=Task(TASK_KINDS[TaskKind.rank], assignment), answer=order,
        notice="Your last ranking was withdrawn. Change it and submit again.",
    )  # fmt: skip
