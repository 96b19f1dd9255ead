"""`rlhf train`, `rlhf runs`, `rlhf worker` and `rlhf beat`."""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from app.cli._common import console, factory, fail
from app.config import get_settings
from app.db import session_scope
from app.models import Run, RunKind, RunStatus
from app.run_kinds import KINDS, KindSpec

train_cli = typer.Typer(help="Launch training and generation runs.", no_args_is_help=True)
runs_cli = typer.Typer(help="Inspect and control runs.", no_args_is_help=True)


def _parse_sets(values: list[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs; values are JSON when they parse as JSON, else strings."""
    config: dict[str, Any] = {}
    for item in values or []:
        if "=" not in item:
            raise fail(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            config[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            config[key.strip()] = raw
    return config


def _launch(kind: RunKind, project: str, sets: list[str] | None, now: bool,
            models: dict[str, str | None]) -> None:  # fmt: skip
    """Create a run (and send it, or run it here with `now`). `models` maps the kind's model
    inputs (`base_model_id`, `judge_model_id`, ...) to model versions by name or id."""
    from app.queue import send_run
    from app.services import audit, registry, workers
    from app.services.projects import get_project
    from app.services.runs import sizing
    from app.services.runs.lifecycle import create_run
    from app.services.runs.records import RunError

    session_factory = factory()
    try:
        with session_scope(session_factory) as session:
            proj = get_project(session, project)
            if proj is None:
                raise fail(f"no project {project!r}")
            config = _parse_sets(sets)
            worker = workers.fastest_live(session)
            defaults = sizing.launch_defaults(kind, worker)
            if defaults:
                shown = ", ".join(f"{k}={v}" for k, v in defaults.items() if k not in config)
                if shown:
                    typer.echo(f"Sized for {workers.describe(worker)}: {shown} (--set to change)", err=True)
            config = defaults | config
            columns: dict[str, int] = {}
            for field, ref in models.items():
                if ref:
                    version = registry.find_model(session, ref)
                    if version is None:
                        raise fail(f"no model version {ref!r} (see `rlhf models list`)")
                    target = columns if field in ("base_model_id", "reward_model_id") else config
                    target[field] = version.id
            run = create_run(session, project=proj, kind=kind, config=config, **columns)
            run_id = run.id
            audit.record(session, audit.Actor.cli(), "run.launch", target=("run", run_id), project=proj,
                         kind=kind.value)  # fmt: skip
            estimate = sizing.estimate(session, kind=kind, project=proj, config=run.config, worker=worker)
            sizing.log_estimate(session, run, estimate)
            # on stderr: stdout carries the run's own lines (`--now` in a log file or CI)
            if estimate.seconds is not None:
                typer.echo(
                    f"Estimate: about {sizing.duration(estimate.seconds)} ({estimate.source})", err=True
                )
            for warning in estimate.warnings:
                typer.echo(f"warning: {warning}", err=True)
    except RunError as error:
        raise fail(str(error)) from None
    if not now:
        task_id = send_run(run_id)
        with session_scope(session_factory) as session:
            session.get(Run, run_id).celery_task_id = task_id  # type: ignore[union-attr]
        state = "queued" if task_id else "waiting for the queue (broker unreachable)"
        console.print(f"Run {run_id} ({kind.value}) {state}. Follow it: rlhf runs show {run_id}")
        return
    _run_in_foreground(run_id, session_factory)


def _run_in_foreground(run_id: int, session_factory) -> None:  # type: ignore[no-untyped-def]
    """Run here: a progress bar on a terminal, plain lines (flushed as they come) in a log file
    or CI; the run's log lines either way."""
    from worker.runner import execute_run

    def shown(metrics: dict[str, float]) -> str:
        return "  ".join(f"{k}={v:.3g}" for k, v in list(metrics.items())[:3])

    if not console.is_terminal:
        started = time.monotonic()

        def plain_step(step: int, total: int, metrics: dict[str, float]) -> None:
            elapsed = time.monotonic() - started
            print(f"run {run_id}: step {step}/{total or '?'}  {shown(metrics)}  ({elapsed:.0f}s)", flush=True)

        def plain_log(message: str) -> None:
            print(f"run {run_id}: {message}", flush=True)

        print(f"run {run_id}: starting here (loading the model and the data)", flush=True)
        status = execute_run(run_id, factory=session_factory, on_step=plain_step, on_log=plain_log,
                             on_phase=plain_log)  # fmt: skip
    else:
        columns = [
            TextColumn("[bold]run {task.fields[run]}"),
            BarColumn(),
            TextColumn("{task.fields[position]}"),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("train", total=None, run=run_id, metrics="", position="starting")

            def on_step(step: int, total: int, metrics: dict[str, float]) -> None:
                progress.update(task, completed=step, total=total or None, metrics=shown(metrics),
                                position=f"{step}/{total}")  # fmt: skip

            def on_log(message: str) -> None:
                progress.console.print(f"  {message}", highlight=False)

            def on_phase(phase: str) -> None:
                progress.update(task, position=phase)

            status = execute_run(run_id, factory=session_factory, on_step=on_step, on_log=on_log,
                                 on_phase=on_phase)  # fmt: skip
    with session_scope(session_factory) as session:
        run = session.get(Run, run_id)
        assert run is not None
        console.print(f"Run {run_id}: {status}" + (f" — {run.error}" if run.error else ""), highlight=False)
        if status != "succeeded":
            raise typer.Exit(1)


def progress_text(run: Run) -> str:
    """Where a run is: its phase outside its steps (loading the model, preparing data, saving),
    its step of the total while it trains (never "step 0/0" while the model loads)."""
    from app.services.runs.sizing import current_phase

    phase = current_phase(run)
    if phase:
        return phase
    if run.total_steps:
        return f"step {run.step}/{run.total_steps}"
    if run.status == RunStatus.queued:
        return "queued"
    if run.status == RunStatus.running:
        return "starting (loading the model and the data)"
    return "no steps"


_PROJECT = Annotated[str, typer.Option("--project", help="Project slug.")]
_SET = Annotated[list[str] | None, typer.Option("--set", help="Config field: key=value (repeatable).")]
_NOW = Annotated[bool, typer.Option("--now", help="Run here in the foreground with a progress bar.")]


def _train_command(spec: KindSpec) -> Any:
    """`rlhf train <kind>`: --project, an option per model input of the kind (--base, --reward,
    --judge, ...), --set and --now."""
    options = [need for need in spec.inputs if need.option]

    def command(project: str, set: list[str] | None = None, now: bool = False, **models: str | None) -> None:
        _launch(spec.kind, project, set, now, {need.field: models[need.option] for need in options})  # type: ignore[index]

    keyword = inspect.Parameter.KEYWORD_ONLY
    model_options = [
        inspect.Parameter(need.option, keyword, default=None,  # type: ignore[arg-type]
                          annotation=Annotated[str | None, typer.Option(f"--{need.option}", help=need.help)])
        for need in options
    ]  # fmt: skip
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("project", keyword, annotation=_PROJECT),
            *model_options,
            inspect.Parameter("set", keyword, default=None, annotation=_SET),
            inspect.Parameter("now", keyword, default=False, annotation=_NOW),
        ]
    )
    command.__doc__ = spec.description
    command.__name__ = f"train_{spec.kind.value}"
    return command


for _spec in KINDS.values():
    train_cli.command(_spec.kind.value)(_train_command(_spec))


@runs_cli.command("list")
def list_runs(project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
              limit: int = 30) -> None:  # fmt: skip
    """The newest runs."""
    from sqlalchemy import select

    from app.models import Project

    table = Table("id", "kind", "project", "status", "step", "created", "error")
    with session_scope(factory()) as session:
        query = select(Run, Project.slug).join(Project, Project.id == Run.project_id)
        if project:
            query = query.where(Project.slug == project)
        for run, slug in session.execute(query.order_by(Run.id.desc()).limit(limit)):
            table.add_row(str(run.id), run.kind.value, slug, run.status.value,
                          progress_text(run).removesuffix(" (loading the model and the data)"),
                          run.created_at.strftime("%Y-%m-%d %H:%M"),
                          (run.error or "")[:60])  # fmt: skip
    console.print(table)


@runs_cli.command("show")
def show_run(run_id: int) -> None:
    """A run's status, config, latest metrics and log."""
    from sqlalchemy import select

    from app.models import RunLog
    from app.services.runs.lifecycle import metric_series

    with session_scope(factory()) as session:
        run = session.get(Run, run_id)
        if run is None:
            raise fail(f"no run {run_id}")
        console.print(f"Run {run.id}: {run.kind.value}, [bold]{run.status.value}[/bold], "
                      f"{progress_text(run)}, snapshot {run.snapshot_size} items")  # fmt: skip
        if run.error:
            console.print(f"[red]error:[/red] {run.error}", highlight=False)
        console.print_json(data=run.config)
        series, _ = metric_series(session, run_id=run.id)
        for name, points in sorted(series.items()):
            console.print(f"  {name:<28} {points[-1][1]:.4g} (step {points[-1][0]})")
        for line in session.scalars(select(RunLog).where(RunLog.run_id == run.id).order_by(RunLog.id)):
            console.print(f"  [{line.level}] {line.created_at:%H:%M:%S} {line.message}", highlight=False)


@runs_cli.command("cancel")
def cancel_run(run_id: int) -> None:
    """Cancel a run: a queued one is revoked, a running one stops at its next step."""
    from app.queue import revoke
    from app.services import audit
    from app.services.runs.lifecycle import request_cancel
    from app.services.runs.records import RunError

    try:
        with session_scope(factory()) as session:
            run = session.get(Run, run_id)
            if run is None:
                raise fail(f"no run {run_id}")
            task_id = request_cancel(session, run=run)
            audit.record(session, audit.Actor.cli(), "run.cancel", target=("run", run_id))
    except RunError as error:
        raise fail(str(error)) from None
    if task_id:
        revoke(task_id)
    console.print(f"Run {run_id}: cancel requested.")


@runs_cli.command("dispatch")
def dispatch() -> None:
    """Send queued runs that never reached the broker (it was down when they were created)."""
    from sqlalchemy import select

    from app.models import RunStatus
    from app.queue import send_run

    sent = 0
    with session_scope(factory()) as session:
        for run in session.scalars(
            select(Run).where(Run.status == RunStatus.queued, Run.celery_task_id.is_(None))
        ):
            run.celery_task_id = send_run(run.id)
            sent += run.celery_task_id is not None
    console.print(f"{sent} run(s) sent.")


def worker(
    queues: Annotated[str, typer.Option(help="Queues to consume.")] = "train,default",
    concurrency: Annotated[int, typer.Option(help="Parallel tasks (one per GPU).")] = 1,
) -> None:
    """Start a Celery worker (one training task per process; one process per GPU)."""
    command = ["-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queues,
               "--concurrency", str(concurrency), "--loglevel", "INFO"]  # fmt: skip
    os.execvp(sys.executable, [sys.executable, *command])


def beat() -> None:
    """Start Celery beat: retraining schedules, dispatch of waiting runs, stale-run reaping."""
    schedule_file = get_settings().data_dir / "celerybeat-schedule"
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    command = ["-m", "celery", "-A", "worker.celery_app", "beat",
               "--schedule", str(schedule_file), "--loglevel", "INFO"]  # fmt: skip
    os.execvp(sys.executable, [sys.executable, *command])


def register(cli: typer.Typer) -> None:
    cli.add_typer(train_cli, name="train")
    cli.add_typer(runs_cli, name="runs")
    cli.command("worker")(worker)
    cli.command("beat")(beat)
