"""Model evaluation for admins: the version leaderboard, length bias, evaluate and judge results."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.models import ModelKind
from app.services import evaluation, versions
from app.web.deps import AdminUser, ProjectDep, SessionDep, verify_csrf
from app.web.templating import render

router = APIRouter(prefix="/admin", tags=["evaluation"], dependencies=[Depends(verify_csrf)])

SOURCES: dict[str, str] = {"human": "Human votes", "ai": "AI judge votes", "both": "Human and AI votes"}
LEADERBOARD_ROUNDS = 1000

# Figures an evaluate run stores in metrics["evaluation"], with a readable name; other keys are
# shown as they are.
EVALUATION_LABELS: dict[str, str] = {
    "accuracy": "Accuracy on held-out judgments",
    "win_rate": "Win rate vs reference",
    "lc_win_rate": "Length-controlled win rate",
    "length_pearson": "Score–length Pearson r",
    "length_spearman": "Score–length Spearman ρ",
}
HIDDEN_FIGURES = frozenset({"run_id", "project_id"})


def _figures(figures: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(key, label, value) of the evaluation figures: the known ones first."""
    known = [(k, EVALUATION_LABELS[k], figures[k]) for k in EVALUATION_LABELS if k in figures]
    rest = [
        (k, k, v)
        for k, v in sorted(figures.items())
        if k not in EVALUATION_LABELS and k not in HIDDEN_FIGURES
    ]
    return known + rest


@router.get("/projects/{slug}/leaderboard", include_in_schema=False)
def leaderboard_page(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    project: ProjectDep,
    source: evaluation.Source = "human",
) -> Response:
    board = evaluation.leaderboard(session, project.id, source=source, rounds=LEADERBOARD_ROUNDS)
    results = evaluation.evaluate_results(session, project.id)
    policies = versions.policies_by_creation(session)
    promoted = next((p for p in policies if p.promoted and p.project_id == project.id), None)
    newest = next((p for p in policies if p.project_id == project.id), None)
    challenger = promoted or newest or (policies[0] if policies else None)
    opponent = None
    if challenger is not None:
        opponent = next((p for p in policies if p.id == challenger.parent_id), None) or next(
            (p for p in policies if p.id != challenger.id), None
        )
    context = {
        "project": project,
        "board": board,
        "source": source,
        "sources": SOURCES,
        "results": [(r, _figures(r.figures)) for r in results],
        "policies": policies,
        "challenger": challenger,
        "opponent": opponent,
        "page": "leaderboard",
    }
    return render(request, "evaluation/leaderboard.html", context)


@router.get("/projects/{slug}/length-bias", include_in_schema=False)
def length_bias_page(
    request: Request,
    session: SessionDep,
    user: AdminUser,
    project: ProjectDep,
    source: evaluation.Source = "human",
) -> Response:
    labels = evaluation.label_length_bias(session, project.id, source=source)
    lengths = evaluation.policy_lengths(session, project.id)
    board = evaluation.leaderboard(session, project.id, source=source, rounds=LEADERBOARD_ROUNDS)
    by_version = {row.model_version_id: row for row in board.rows}
    # x = the version's place among the project's versions, oldest first (as in the table)
    win_series: dict[str, list[tuple[float, float]]] = {}
    ranked = [
        (n, by_version[v.model_version_id])
        for n, v in enumerate(lengths, 1)
        if v.model_version_id in by_version
    ]
    if ranked:
        win_series = {
            "raw win rate": [(n, row.win_rate) for n, row in ranked],
            "LC win rate": [(n, row.lc_win_rate) for n, row in ranked],
        }
    names = versions.names(session, {v.parent_id for v in lengths if v.parent_id is not None})
    reward_models = [
        (v, _figures(v.figures))
        for v in evaluation.evaluated_versions(session, project.id)
        if v.kind == ModelKind.reward.value and any(k.startswith("length_") for k in v.figures)
    ]
    context = {
        "project": project,
        "labels": labels,
        "lengths": lengths,
        "by_version": by_version,
        "win_series": win_series,
        "names": names,
        "board": board,
        "reward_models": reward_models,
        "source": source,
        "sources": SOURCES,
        "page": "length",
    }
    return render(request, "evaluation/length_bias.html", context)
