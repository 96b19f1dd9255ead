"""`rlhf simulate`: label a project with simulated raters driven by an oracle (a dry run)."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
err = Console(stderr=True)


def simulate_command(
    project: Annotated[str, typer.Option("--project", help="Slug of the project to label.")],
    raters: Annotated[
        int, typer.Option("--raters", min=1, help="Simulated raters (accounts sim-<slug>-1..N).")
    ],
    oracle: Annotated[
        str,
        typer.Option(
            "--oracle",
            help="MODULE:FUNCTION scoring (prompt, completion) -> float, higher is better; "
            "shipped: app.oracles:prefers_word (counts 'banana'), prefers_shorter, "
            "prefers_longer, prefers_polite.",
        ),
    ],
    noise: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Probability of flipping each choice.")
    ] = 0.0,
    base_url: Annotated[str, typer.Option(help="The running server to label through.")] = (
        "http://127.0.0.1:8000"
    ),
    max_judgments: Annotated[
        int | None, typer.Option(min=0, help="Stop after this many judgments (all raters).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise (and of ties on two-point scales).")] = 0,
    strong_gap: Annotated[
        float, typer.Option(help="Score gap from which a side is 'much better' (strength 2).")
    ] = 2.0,
    left_bias: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Planted position bias: chance that a biased rater just picks left."
        ),
    ] = 0.0,
    biased_raters: Annotated[
        int, typer.Option(min=0, help="How many raters (the first ones) carry the left bias.")
    ] = 0,
    patience: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds a rater waits while the pairs left are leased to other raters (one may "
            "need its vote next), before it stops.",
        ),
    ] = 120.0,
    edit_rule: Annotated[
        str,
        typer.Option(
            help="MODULE:FUNCTION editing (prompt, text) -> text for write and improve tasks; shipped: "
            "app.oracles:add_target_word, app.oracles:keep.",
        ),
    ] = "app.oracles:add_target_word",
    samples: Annotated[
        int, typer.Option(min=1, help="A write task's answer edits the best of this many model samples.")
    ] = 4,
    accept_above: Annotated[
        float, typer.Option(help="A review accepts answers the oracle scores above this (and not lazy).")
    ] = 0.0,
) -> None:
    """Label a project with simulated raters, over HTTP, through the pages people use.

    Each rater logs in at --base-url, scores both responses with the oracle and submits the better one.
    Where the project's task mix asks for writing, a rater answers a write task with the best of the
    prompt's model samples edited by --edit-rule, an improve task with the completion so edited, and
    reviews others' answers by the oracle (accepted when above --accept-above and not flagged lazy).
    Accounts are made in DATABASE_URL's database (the server's), with passwords that are never shown.
    """
    from app.oracles import OracleError
    from app.simulate import SimulationConfig, SimulationError, simulate

    try:
        config = SimulationConfig(
            project=project,
            raters=raters,
            oracle=oracle,
            noise=noise,
            base_url=base_url.rstrip("/"),
            max_judgments=max_judgments,
            seed=seed,
            strong_gap=strong_gap,
            left_bias=left_bias,
            biased_raters=biased_raters,
            patience_s=patience,
            edit_rule=edit_rule,
            samples=samples,
            accept_above=accept_above,
        )
    except SimulationError as error:
        _fail(str(error))

    progress = Progress(
        TextColumn("[bold]simulating[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ties {task.fields[ties]}  flips {task.fields[flips]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    state = {"ties": 0, "flips": 0}
    task = progress.add_task("judgments", total=None, ties=0, flips=0)

    def on_start(total: int) -> None:
        progress.update(task, total=total or None)
        progress.start()

    def on_judgment(_stats, decision) -> None:  # type: ignore[no-untyped-def]
        state["ties"] += decision.tie
        state["flips"] += decision.flipped
        progress.update(task, advance=1, ties=state["ties"], flips=state["flips"])
        current = progress.tasks[0]
        if current.total is not None and current.completed > current.total:
            # gold pairs and widened split pairs come on top of the estimate
            progress.update(task, total=current.completed)

    try:
        result = simulate(config, on_start=on_start, on_judgment=on_judgment)
    except (OracleError, SimulationError) as error:
        progress.stop()
        _fail(str(error))
    finally:
        progress.stop()

    table = Table("rater", "judgments", "ties", "flips", "much better", "left", "right", "refused")
    for r in result.raters:
        table.add_row(
            r.username, str(r.judgments), str(r.ties), str(r.flips), str(r.strong),
            str(r.left), str(r.right), str(r.refused),
        )  # fmt: skip
    table.add_row(
        "[bold]total[/bold]",
        str(result.judgments),
        str(result.ties),
        str(result.flips),
        str(sum(r.strong for r in result.raters)),
        str(sum(r.left for r in result.raters)),
        str(sum(r.right for r in result.raters)),
        str(sum(r.refused for r in result.raters)),
    )
    console.print(table)
    rate = result.judgments / result.seconds if result.seconds else 0.0
    console.print(
        f"{result.judgments} judgments on {project!r} by {len(result.raters)} simulated raters "
        f"in {result.seconds:.1f} s ({rate:.1f}/s).",
        highlight=False,
    )
    written = sum(r.written for r in result.raters)
    improved = sum(r.improved for r in result.raters)
    reviews = sum(r.reviews for r in result.raters)
    if written or improved or reviews:
        accepted = sum(r.accepted for r in result.raters)
        console.print(
            f"{written} answers written, {improved} completions improved, {reviews} reviews "
            f"({accepted} accepted).",
            highlight=False,
        )
    waiting = [r.username for r in result.raters if r.gave_up_waiting]
    if waiting:
        err.print(
            f"[yellow]note[/yellow]: {len(waiting)} rater(s) stopped after waiting {patience:g} s for "
            "pairs leased to other raters (raise --patience to wait longer).",
            highlight=False,
        )
    if result.errors:
        # The same failure (no server, wrong database) hits every rater: say it once.
        messages = sorted({r.error for r in result.raters if r.error})
        for message in messages:
            users = [r.username for r in result.raters if r.error == message]
            who = users[0] if len(users) == 1 else f"{len(users)} raters"
            err.print(f"[red]error[/red] ({who}): {message}", highlight=False)
        raise typer.Exit(1)


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def register(cli: typer.Typer) -> None:
    cli.command("simulate")(simulate_command)
