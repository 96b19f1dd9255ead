"""`rlhf quality`: a project's label quality in the terminal (the figures of its quality page)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def quality_command(
    project: Annotated[str, typer.Argument(help="Slug of the project.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON instead.")] = False,
) -> None:
    """Label quality of a project: agreement, Krippendorff's alpha, gold accuracy, position bias,
    AI judges against humans, and every rater with the rules that flag them.

    The same figures as /admin/projects/SLUG/quality and /raters. Exits with status 3 when a
    rater is flagged, so that a script can alert on it.
    """
    from app.cli._common import factory
    from app.services.projects import get_project
    from app.services.quality.report import project_quality

    with factory()() as session:
        found = get_project(session, project)
        if found is None:
            err.print(f"[red]error:[/red] no project {project!r} (see `rlhf projects list`)", highlight=False)
            raise typer.Exit(1)
        report = project_quality(session, found)
        figures = _figures(report)
    if as_json:
        print(json.dumps(figures, indent=2, default=str))
    else:
        _print(figures)
    if figures["flagged_raters"]:
        raise typer.Exit(3)


def _figures(report: Any) -> dict[str, Any]:
    agreement = report.agreement
    return {
        "project": report.project.slug,
        "human_judgments": report.human_judgments,
        "ai_judgments": report.ai_judgments,
        "agreement": {
            "pairs_of_votes": agreement.pairs.pairs,
            "percent": agreement.percent,
            "alpha_ordinal": agreement.alpha_ordinal,
            "alpha_nominal": agreement.alpha_nominal,
            "alpha_interval": agreement.alpha_interval,
            "comparisons": agreement.units,
        },
        "gold_accuracy": report.gold_accuracy,
        "gold_judgments": report.gold.pairs,
        "left_share": report.left_share,
        "left_p_value": report.left_p_value,
        "tie_rate": report.tie_rate,
        "both_bad_rate": report.both_bad_rate,
        "longer_wins_rate": report.longer_wins_rate,
        "raters": [
            {
                "username": r.username,
                "judgments": r.judgments,
                "per_active_hour": r.throughput,
                "median_seconds": r.median_seconds,
                "left_share": r.left_share,
                "left_p_value": r.left_p_value,
                "tie_rate": r.tie_rate,
                "both_bad_rate": r.both_bad_rate,
                "flag_rate": r.flag_rate,
                "gold_accuracy": r.gold_accuracy,
                "gold_judgments": r.gold_judgments,
                "agreement": r.agreement_rate,
                "paused": r.is_paused,
                "outliers": r.outliers,
            }
            for r in report.raters
        ],
        "judges": [
            {
                "username": j.username,
                "judgments": j.judgments,
                "shared_comparisons": j.shared_comparisons,
                "agreement_with_humans": j.agreement,
                "human_human_agreement": j.human_agreement,
            }
            for j in report.judges
        ],
        "flagged_raters": [r.username for r in report.raters if r.outliers],
    }


def _print(figures: dict[str, Any]) -> None:
    if not figures["human_judgments"] and not figures["ai_judgments"]:
        console.print(f"No judgments in {figures['project']!r} yet.", highlight=False)
        return
    agreement = figures["agreement"]
    console.print(
        f"[bold]{figures['project']}[/bold]: {figures['human_judgments']} human judgments, "
        f"{figures['ai_judgments']} AI judgments\n"
        f"  agreement {_pct(agreement['percent'])} of {agreement['pairs_of_votes']} vote pairs on "
        f"{agreement['comparisons']} pairs; Krippendorff's alpha ordinal "
        f"{_num(agreement['alpha_ordinal'])}, nominal {_num(agreement['alpha_nominal'])}\n"
        f"  gold accuracy {_pct(figures['gold_accuracy'])} ({figures['gold_judgments']} gold "
        f"judgments); left choices {_pct(figures['left_share'])} (p {_p(figures['left_p_value'])}); "
        f"ties {_pct(figures['tie_rate'])}; longer completion wins {_pct(figures['longer_wins_rate'])}",
        highlight=False,
    )
    table = Table("rater", "n", "per h", "left", "p", "ties", "gold", "agree", "!")
    table.columns[0].no_wrap = True
    for r in figures["raters"]:
        table.add_row(
            r["username"] + (" (paused)" if r["paused"] else ""),
            str(r["judgments"]),
            _num(r["per_active_hour"], 0),
            _pct(r["left_share"]),
            _p(r["left_p_value"]),
            _pct(r["tie_rate"]),
            _pct(r["gold_accuracy"]),
            _pct(r["agreement"]),
            "!" if r["outliers"] else "",
            style="red" if r["outliers"] else None,
        )
    console.print(table)
    for r in figures["raters"]:
        for reason in r["outliers"]:
            console.print(f"[red]![/red] {r['username']}: {reason}", highlight=False)
    if figures["judges"]:
        judges = Table("AI judge", "n", "shared", "judge–human", "human–human")
        judges.columns[0].no_wrap = True
        for j in figures["judges"]:
            judges.add_row(
                j["username"],
                str(j["judgments"]),
                str(j["shared_comparisons"]),
                _pct(j["agreement_with_humans"]),
                _pct(j["human_human_agreement"]),
            )
        console.print(judges)


def register(cli: typer.Typer) -> None:
    cli.command("quality")(quality_command)
