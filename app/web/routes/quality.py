"""Label quality for admins: rater reliability, agreement, gold accuracy, AI triage (the judge's
accuracy on the audited pairs, the human labels it saved), disputed pairs."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from app.models import Choice, User
from app.services import audit, quality, triage
from app.services.quality.rankings import ranking_quality
from app.web.charts import bar_chart
from app.web.deps import AdminUser, ProjectDep, SessionDep, verify_csrf
from app.web.forms import DisputeForm, NextForm
from app.web.input_guard import IdPath
from app.web.templating import render

router = APIRouter(prefix="/admin", tags=["quality"], dependencies=[Depends(verify_csrf)])

# Where a pause/resume form may send the admin back to: a page of the admin area.
_SAFE_NEXT = re.compile(r"^/admin(/[A-Za-z0-9_\-/]*)?(\?[A-Za-z0-9_\-=&]*)?$")


def _per_rater(
    raters: list[quality.RaterQuality], value: str, flagged: str | None, **options: object
) -> Markup:
    """A bar per rater of one attribute, raters that break the `flagged` rule in red."""
    highlight = {i for i, r in enumerate(raters) if flagged and getattr(r, flagged)}
    return bar_chart(
        [r.username for r in raters],
        [getattr(r, value) for r in raters],
        highlight=highlight,
        **options,  # type: ignore[arg-type]
    )


def _rater_figures(
    raters: list[quality.RaterQuality], report: quality.ProjectQuality | None = None
) -> list[Markup]:
    gold = report.gold_accuracy if report else None
    agreed = report.agreement.percent if report else None
    return [
        _per_rater(raters, "left_share", "position_biased", title="Left response chosen (non-tie votes)",
                   y_label="share", y_max=1.0, reference=0.5),
        _per_rater(raters, "gold_accuracy", "gold_outlier", title="Gold accuracy per rater",
                   y_label="accuracy", y_max=1.0, reference=gold),
        _per_rater(raters, "agreement_rate", "agreement_outlier", title="Agreement with the other raters",
                   y_label="agreement", y_max=1.0, reference=agreed),
    ]  # fmt: skip


def _project_figures(report: quality.ProjectQuality) -> list[Markup]:
    order = sorted(quality.SIGNED_VALUES, reverse=True)  # A much better ... B much better
    figures = [
        bar_chart(
            [quality.VALUE_LABELS[v] for v in order],
            [report.values[v] for v in order],
            title="Human votes on the scale",
            y_label="judgments",
        ),
        *_rater_figures(report.raters, report),
    ]
    if report.judges:
        labels: list[str] = ["humans, all pairs"]
        values: list[float | None] = [report.agreement.percent]
        for judge in report.judges:
            labels += [f"{judge.username} vs humans", "humans on its pairs"]
            values += [judge.agreement, judge.human_agreement]
        figures.append(
            bar_chart(
                labels,
                values,
                title="AI judge agreement with humans vs human-human agreement",
                y_label="agreement",
                y_max=1.0,
                highlight={i for i in range(1, len(labels), 2)},
            )
        )
    return figures


@router.get("/projects/{slug}/quality", include_in_schema=False)
def quality_page(request: Request, session: SessionDep, user: AdminUser, project: ProjectDep) -> Response:
    report = quality.project_quality(session, project)
    figures = _project_figures(report) if not report.empty else []
    rankings = ranking_quality(session, project)
    triaged = triage.triage_report(session, project)
    return render(request, "quality/project.html", {"project": project, "q": report, "figures": figures,
                                                    "rankings": rankings,
                                                    "triage": triaged})  # fmt: skip


def _activity_figures(raters: list[quality.RaterQuality]) -> list[Markup]:
    return [
        _per_rater(raters, "throughput", None, title="Judgments per active hour", y_label="judgments"),
        _per_rater(raters, "median_seconds", None, title="Median time per judgment", y_label="seconds"),
        _per_rater(raters, "tie_rate", None, title="Tie rate", y_label="share", y_max=1.0),
    ]


@router.get("/projects/{slug}/raters", include_in_schema=False)
def raters_page(request: Request, session: SessionDep, user: AdminUser, project: ProjectDep) -> Response:
    raters = quality.rater_report(session, project)
    return render(
        request,
        "quality/raters.html",
        {
            "project": project,
            "raters": raters,
            "figures": _rater_figures(raters) + _activity_figures(raters) if raters else [],
            "rules": {
                "position_min_votes": quality.POSITION_MIN_VOTES,
                "position_p": quality.POSITION_P_VALUE,
                "gold_min": quality.GOLD_MIN_JUDGMENTS,
                "gold_gap": quality.GOLD_GAP,
                "agreement_min": quality.AGREEMENT_MIN_PAIRS,
                "agreement_gap": quality.AGREEMENT_GAP,
            },
        },
    )


def _writer_figures(writers: list[quality.WriterQuality]) -> list[Markup]:
    def per_writer(value: str, flagged: str | None, **options: object) -> Markup:
        highlight = {i for i, w in enumerate(writers) if flagged and getattr(w, flagged)}
        return bar_chart(
            [w.username for w in writers], [getattr(w, value) for w in writers], highlight=highlight,
            **options,  # type: ignore[arg-type]
        )  # fmt: skip

    return [
        per_writer("acceptance_rate", "acceptance_outlier", title="Acceptance rate per writer",
                   y_label="share", y_max=1.0),
        per_writer("mean_score", "score_outlier", title="Mean review score per writer", y_label="score",
                   y_max=5.0),
        per_writer("median_seconds", None, title="Median time per demonstration", y_label="seconds"),
        per_writer("mean_chars", None, title="Mean length per demonstration", y_label="characters"),
        per_writer("mean_edit_distance", None, title="Mean edit distance of improvements",
                   y_label="characters"),
        per_writer("lazy_share", "lazy_outlier", title="Answers with a lazy-writer flag", y_label="share",
                   y_max=1.0),
    ]  # fmt: skip


@router.get("/projects/{slug}/writers", include_in_schema=False)
def writers_page(request: Request, session: SessionDep, user: AdminUser, project: ProjectDep) -> Response:
    writers = quality.writer_report(session, project)
    return render(
        request,
        "quality/writers.html",
        {
            "project": project,
            "writers": writers,
            "figures": _writer_figures(writers) if writers else [],
            "rules": {
                "min_decided": quality.WRITER_MIN_DECIDED,
                "acceptance_gap": quality.ACCEPTANCE_GAP,
                "min_reviews": quality.WRITER_MIN_REVIEWS,
                "score_gap": quality.SCORE_GAP,
                "min_demonstrations": quality.WRITER_MIN_DEMONSTRATIONS,
                "lazy_gap": quality.LAZY_GAP,
            },
        },
    )


@router.get("/projects/{slug}/disputes", include_in_schema=False)
def disputes_page(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    project: ProjectDep,
    status: Annotated[str, Query(pattern="^(unresolved|resolved|all)$")] = "unresolved",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    scope: Annotated[str, Query(pattern="^(split|any)$")] = "split",
) -> Response:
    result = quality.disputes(session, project, status=status, page=page, scope=scope)  # type: ignore[arg-type]
    return render(
        request,
        "quality/disputes.html",
        {
            "project": project,
            "result": result,
            "statuses": quality.DISPUTE_STATUSES,
            "choices": [c.value for c in Choice],
            "resolved": request.query_params.get("resolved"),
        },
    )


@router.post("/projects/{slug}/disputes/{comparison_id}", include_in_schema=False)
def resolve_dispute(
    comparison_id: IdPath,
    session: SessionDep,
    user: AdminUser,
    project: ProjectDep,
    form: Annotated[DisputeForm, Form()],
) -> Response:
    try:
        comparison = quality.resolve(
            session,
            project=project,
            comparison_id=comparison_id,
            choice=None if form.action == "clear" else form.choice,
            note=form.note,
            admin_id=user.id,
        )
    except quality.QualityError as error:
        raise HTTPException(422, str(error)) from error
    if comparison is None:
        raise HTTPException(404, "No such pair in this project.")
    audit.record(
        session, audit.Actor.of(user, "web"), f"dispute.{form.action}", target=("comparison", comparison_id),
        project=project, choice=form.choice if form.action == "resolve" else None,
    )  # fmt: skip
    target = (
        f"/admin/projects/{project.slug}/disputes?status={form.status}&scope={form.scope}&page={form.page}"
        f"&resolved={comparison_id}"
    )
    return RedirectResponse(f"{target}#pair-{comparison_id}", status_code=303)


def _set_paused(session: Session, actor: audit.Actor, user_id: int, paused: bool, next_url: str) -> Response:
    account = session.get(User, user_id)
    if account is None:
        raise HTTPException(404, "No such user.")
    try:
        quality.set_paused(session, user=account, paused=paused)
    except quality.QualityError as error:
        raise HTTPException(422, str(error)) from error
    audit.record(
        session, actor, "rater.pause" if paused else "rater.resume", target=("user", account.username)
    )
    target = next_url if _SAFE_NEXT.match(next_url) else "/admin/users"
    return RedirectResponse(target, status_code=303)


@router.post("/raters/{user_id}/pause", include_in_schema=False)
def pause_rater(
    user_id: IdPath, session: SessionDep, user: AdminUser, form: Annotated[NextForm, Form()]
) -> Response:
    return _set_paused(session, audit.Actor.of(user, "web"), user_id, True, form.next)


@router.post("/raters/{user_id}/resume", include_in_schema=False)
def resume_rater(
    user_id: IdPath, session: SessionDep, user: AdminUser, form: Annotated[NextForm, Form()]
) -> Response:
    return _set_paused(session, audit.Actor.of(user, "web"), user_id, False, form.next)
